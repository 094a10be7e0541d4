"""target.py: one Target for where latency is predicted, resolved from whatever ``hw=`` takes, and the one
place that says whether a predictor was measured on this machine's CPU (and why not)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sparsevit_sdk import LatencyPredictor, SearchSession, Target
from sparsevit_sdk.profiler import device_fingerprint
from sparsevit_sdk.target import fitted_elsewhere

SHAPE = (1, 3, 64, 64)


def with_fingerprint(fingerprint: dict) -> LatencyPredictor:
    """The shipped CPU predictor, as if its data had been timed on the CPU ``fingerprint`` describes."""
    return LatencyPredictor.from_dict({**LatencyPredictor.load("cpu").to_dict(), "fingerprint": fingerprint})


def test_a_shipped_name_resolves_to_its_predictor_and_what_is_known_of_it(micro):
    target = Target.resolve("cpu", micro, SHAPE)
    learned = target.predictor.learned_
    assert (target.name, target.predictor.hw, target.runtime) == ("cpu", "cpu", learned.runtime)
    assert target.threads == max(learned.threads) and target.clock in ("cpu", "wall")
    assert target.expected_error == target.predictor.expected_error and target.expected_error["models"] > 0
    assert (target.why_not_here, target.here) == fitted_elsewhere(target.predictor)  # one comparison, one answer
    assert target.measured_here == (target.why_not_here is None) and not target.calibrated_here


def test_a_predictor_file_resolves_by_its_path(micro, tmp_path):
    path = LatencyPredictor.load("cpu").save(tmp_path / "p.json")
    for given in (path, str(path)):
        target = Target.resolve(given, micro, SHAPE)
        assert target.name == str(path) and target.predictor.hw == "cpu"
        assert target.predictor.to_dict() == LatencyPredictor.load("cpu").to_dict()


def test_a_predictor_resolves_as_itself_and_a_target_is_returned_as_it_is(micro):
    predictor = LatencyPredictor.load("cpu")
    target = Target.resolve(predictor, micro, SHAPE)
    assert target.predictor is predictor and target.name == "cpu"
    assert Target.resolve(target, micro, SHAPE) is target


def test_a_cpu_predictor_measured_on_another_cpu_says_why_and_warns_naming_hw_local(micro, caplog):
    here = device_fingerprint("cpu", threads=1, clock="cpu")
    elsewhere = Target.resolve(with_fingerprint({**here, "name": "Some Other CPU", "fingerprint_id": "0123456789ab"}),
                               micro, SHAPE)
    assert not elsewhere.measured_here and "name: 'Some Other CPU' -> " in elsewhere.why_not_here
    assert elsewhere.here["fingerprint_id"] == here["fingerprint_id"]  # this CPU, as compared
    at_home = Target.resolve(with_fingerprint(here), micro, SHAPE)
    assert at_home.measured_here and at_home.why_not_here is None
    for target, warned in [(elsewhere, True), (at_home, False)]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.target"):
            target.warn_if_elsewhere()
        assert ("hw='local'" in caplog.text) == warned, caplog.text


def test_a_gpu_estimate_is_not_measured_here_and_has_nothing_to_compare_or_warn(micro, caplog):
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.target"):
        target = Target.resolve("a100", micro, SHAPE)
        target.warn_if_elsewhere()
    assert target.predictor.estimated and target.name == "a100"
    assert target.why_not_here == "its latencies are not measured on a CPU"
    assert target.here is None and target.expected_error is None and "measured on another CPU" not in caplog.text


@pytest.mark.parametrize("hw, message", [
    ("jetson-nano", r"unknown hardware 'jetson-nano'; known targets: cpu, .*hw='local'"),
    ("missing.json", r"predictor file 'missing.json' not found; pass the path of a file LatencyPredictor.save"),
])
def test_a_bad_name_or_a_missing_file_is_refused_naming_the_fix(micro, hw, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message):
        Target.resolve(hw, micro, SHAPE)


def test_a_predictor_for_another_runtime_is_refused_however_it_is_given(micro):
    target = Target.resolve("cpu", micro, SHAPE)
    for hw in ("cpu", target.predictor, target):
        with pytest.raises(ValueError, match="predicts eager latencies, not compiled.*hw='local'"):
            Target.resolve(hw, micro, SHAPE, runtime="compiled")


def test_a_search_session_takes_a_target_as_hw(micro):
    target = Target.resolve("cpu", micro, (1, 3, 112, 112))
    session = SearchSession(micro, hw=target, input_shape=(1, 3, 112, 112), progress=False, max_evaluations=20,
                            latency_budget=0.9, population=10, parents=4, seed=0, proxy=lambda cfg: -cfg.mean)
    assert session.target is target and session.predictor is target.predictor and not session.measure_finalists
    result = session.run()
    assert result.hw == "cpu" and result.predicted_ms > 0
    assert result.predictor_info["expected_error"] == target.expected_error


def test_a_search_session_takes_a_predictor_file_as_hw(micro, tmp_path):
    path: Path = LatencyPredictor.load("cpu").save(tmp_path / "p.json")
    session = SearchSession(micro, hw=str(path), input_shape=(1, 3, 112, 112), progress=False,
                            proxy=lambda cfg: -cfg.mean)
    assert session.target.name == str(path) and session.predictor.hw == "cpu"


def test_a_calibration_used_for_another_input_or_model_is_called_poor_and_warned(micro, caplog):
    """A model swapped (or an input changed) after calibrating: the calibration's error figure is of the model and
    input it measured, so it must not pass for this one's."""
    from sparsevit_sdk import build_model, for_device

    calibrated = for_device(micro, SHAPE, "cpu", cache=False, progress=False, time_limit=1)
    same = Target.resolve(calibrated, micro, SHAPE)
    assert same.calibrated_for is None and same.expected_error == calibrated.expected_error
    for model, shape in ((micro, (1, 3, 96, 96)), (build_model("swin_micro", embed_dim=48), SHAPE)):
        other = Target.resolve(calibrated, model, shape)
        assert other.calibrated_for == f"{micro.signature} at 1x3x64x64"
        assert other.expected_error["poor"] and "not this model and input" in other.expected_error["how"]
        with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.target"):
            caplog.clear()
            other.warn_if_elsewhere()
        assert "calibrated for" in caplog.text and "hw='local'" in caplog.text
    # a Target judged for one input is judged again for another
    assert Target.resolve(same, micro, (1, 3, 96, 96)).expected_error["poor"]
    summary = SearchSession(micro, hw=same, input_shape=(1, 3, 96, 96), progress=False, max_evaluations=8,
                            latency_budget=0.9, population=4, parents=2, seed=0, proxy=lambda cfg: -cfg.mean
                            ).run().summary()
    assert "the predictor is poor here" in summary


def test_a_predictor_releveled_scales_every_whole_model_prediction_and_records_it(micro, tmp_path):
    from sparsevit_sdk import search_space

    base = LatencyPredictor.load("cpu")
    configs = [search_space(micro).dense(), search_space(micro).uniform(0.5)]
    twice = base.releveled(2.0)
    before = base.predict_configs(micro, SHAPE, configs)
    assert twice.predict_configs(micro, SHAPE, configs) == pytest.approx(2 * before)
    assert twice.releveled(0.5).learned_.calibration["level"] == 1.0 and "level" not in base.learned_.calibration
    assert LatencyPredictor.load(twice.save(tmp_path / "p.json")).learned_.calibration["level"] == 2.0
    with pytest.raises(ValueError, match="positive"):
        base.releveled(0.0)


def test_a_machine_that_changed_speed_since_calibrating_is_releveled_to_the_dense_model_now(micro, caplog):
    from sparsevit_sdk import for_device, search_space

    calibrated = for_device(micro, SHAPE, "cpu", cache=False, progress=False, time_limit=1)
    dense = search_space(micro).dense()
    # as if calibrated when the machine ran 1.6x slower: the dense model, timed now, runs far faster than predicted
    slow = Target.resolve(calibrated.releveled(1.6), micro, SHAPE)
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.target"):
        now = slow.rechecked(micro, SHAPE)
    assert "faster than when this predictor was calibrated" in caplog.text and "refresh=True" in caplog.text
    ratio = now.predictor.predict_config(micro, SHAPE, dense) / calibrated.predict_config(micro, SHAPE, dense)
    assert 0.75 < ratio < 1.33  # back near the machine's scale (a live measurement: loose)
    assert now.predictor.learned_.calibration["level"] == pytest.approx(ratio)  # 1.6 x measured / predicted
    assert micro.block_sparsity == [[0.0, 0.0]] * 4  # left dense, as found
    # only a calibration of this CPU, for this model and input, is checked against it
    shipped = Target.resolve("cpu", micro, SHAPE)
    assert shipped.rechecked(micro, SHAPE) is shipped
    other_input = Target.resolve(calibrated, micro, (1, 3, 96, 96))
    assert other_input.rechecked(micro, (1, 3, 96, 96)) is other_input
    summary = SearchSession(micro, hw=calibrated.releveled(1.6), input_shape=SHAPE, progress=False, max_evaluations=8,
                            latency_budget=0.9, population=4, parents=2, seed=0, proxy=lambda cfg: -cfg.mean,
                            measure_finalists=False).run().summary()
    assert "re-levelled x" in summary
