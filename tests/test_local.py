"""A predictor calibrated on this device: hw="local", for_device, the cache,
sparsevit-calibrate, and the calibration model underneath (group curves, residual curves and
their cross-validated weight)."""

from __future__ import annotations

import logging

import pytest

import sparsevit_sdk.local as local
from sparsevit_sdk import LatencyPredictor, SearchSession, build_model, measure_latency, search_space
from sparsevit_sdk.calibration import MIN_MODELS
from sparsevit_sdk.local import for_device

SHAPE = (1, 3, 112, 112)


@pytest.fixture(scope="module")
def micro():
    return build_model("swin_micro")


@pytest.mark.slow
def test_for_device_fixes_a_base_five_times_too_slow_and_caches_the_result(cache, micro, monkeypatch, caplog):
    base = LatencyPredictor.from_dict({**LatencyPredictor.load("cpu").to_dict(), "unit_scale": {"*": [[0.0, 5.0]]}})
    dense = search_space(micro).dense()
    measured = measure_latency(micro, SHAPE, warmup=2, repeats=10, threads=1, clock="cpu").p10_ms
    assert base.predict_config(micro, SHAPE, dense) > 2 * measured  # the base is badly off here

    predictor = for_device(micro, SHAPE, "cpu", base=base, progress=False)
    assert predictor.hw == "local" and not predictor.estimated
    assert predictor.learned_.threads == [1] and predictor.learned_.fingerprint["clock"] == "cpu"
    record = predictor.learned_.calibration
    assert record["model_rows"] >= MIN_MODELS or not record["met"]
    assert record["model_rows"] >= 5 and record["layer_rows"] > 0
    assert abs(predictor.predict_config(micro, SHAPE, dense) / measured - 1) < 0.35
    assert len(list(cache.glob("*.json"))) == 1
    assert predictor.learned_.calibration["probe_ms"] > 0  # the machine's speed as calibrated

    def no_measuring(*args, **kwargs):
        raise AssertionError("a cached calibration was measured again")

    monkeypatch.setattr(local, "calibrate_here", no_measuring)
    again = for_device(micro, SHAPE, "cpu", progress=False)
    assert again.to_dict()["unit_scale"] == predictor.to_dict()["unit_scale"]
    with pytest.raises(AssertionError, match="measured again"):
        for_device(micro, SHAPE, "cpu", refresh=True, progress=False)
    with pytest.raises(AssertionError, match="measured again"):  # another input shape is another calibration
        for_device(micro, (1, 3, 140, 140), "cpu", progress=False)
    # the entry holds the key it was written for: a valid predictor of another device in its slot is not used
    assert predictor.learned_.calibration["cache_key"]["input_shape"] == list(SHAPE)
    (path,) = cache.glob("*.json")
    LatencyPredictor.load("intel-xeon-amx-2t").save(path)
    with pytest.raises(AssertionError, match="measured again"):
        for_device(micro, SHAPE, "cpu", progress=False)
    assert "was not written for this device" in caplog.text


@pytest.mark.parametrize("ratio, said", [(1.05, None), (1.5, "slower"), (0.5, "faster")])
def test_a_machine_slower_or_faster_than_when_calibrated_is_said(caplog, monkeypatch, ratio, said):
    """The rule at fixed probe ratios (a live ratio near 1 is within this shared machine's noise)."""
    monkeypatch.setattr(local, "speed_change", lambda calibrated, clock: (calibrated * ratio, ratio))
    document = LatencyPredictor.load("cpu").to_dict()
    document["calibration"] = {"probe_ms": 0.5, "created": "2026-12-07T21:00:00+00:00"}
    with caplog.at_level(logging.WARNING, logger=local.__name__):
        local._same_machine(LatencyPredictor.from_dict(document), "cpu")
    messages = [r.getMessage() for r in caplog.records]
    assert (messages == []) if said is None else (len(messages) == 1 and f"50 % {said} than" in messages[0]
                                                  and "refresh=True" in messages[0])


def test_the_reference_probe_sees_a_machine_four_times_slower_or_faster():
    from sparsevit_sdk.profiler.reference import reference_ms, speed_change

    now = reference_ms()
    assert now > 0 and speed_change(now / 4)[1] > 2 and speed_change(now * 4)[1] < 0.5


def test_the_cache_key_names_device_model_shape_and_dtype(micro):
    fp = {"fingerprint_id": "abc", "threads": 1}
    arch = micro.architecture

    def key(*args) -> str:
        return local.cache_key(local.cache_fields(*args))
    keys = {key(fp, arch, SHAPE, "fp32"), key({**fp, "fingerprint_id": "abd"}, arch, SHAPE, "fp32"),
            key(fp, arch, (2, 3, 112, 112), "fp32"), key(fp, arch, SHAPE, "bf16"),
            key(fp, build_model("swin_t").architecture, SHAPE, "fp32"),
            key(fp, arch, SHAPE, "fp32", "eager", "Seg-0123")}
    assert len(keys) == 6
    # an entry an earlier calibration procedure measured is not this procedure's
    assert local.cache_fields(fp, arch, SHAPE, "fp32")["procedure"] == local.PROCEDURE


def test_a_cache_write_that_fails_says_why_and_raises_nothing(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    path = blocker / "predictors" / "0123.json"
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.local"):
        local._keep(path, LatencyPredictor.load("cpu").to_dict())
    (warning,) = caplog.records
    assert str(path) in warning.getMessage() and "SPARSEVIT_CACHE" in warning.getMessage()


@pytest.mark.slow
def test_a_calibration_that_cannot_be_cached_is_returned_with_one_warning(tmp_path, micro, monkeypatch, caplog):
    """A cache that cannot be written (here a file where its folder belongs; a full disk fails the same write,
    after the measuring) discarded the calibration with a bare OSError."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SPARSEVIT_CACHE", str(blocker))
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.local"):
        predictor = for_device(micro, (1, 3, 64, 64), "cpu", base=LatencyPredictor.load("cpu"), progress=False,
                               time_limit=1)
    assert predictor.hw == "local" and predictor.learned_.calibration["model_rows"] > 0
    (message,) = [r.getMessage() for r in caplog.records if "cached" in r.getMessage()]  # said once
    assert "used but not cached" in message and str(blocker / "predictors") in message and "SPARSEVIT_CACHE" in message
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": "fp8"}, "unknown dtype"),
    ({"threads": 0}, "threads must be >= 1"),
])
def test_for_device_refuses_bad_settings_before_measuring(cache, micro, kwargs, message):
    with pytest.raises(ValueError, match=message):
        for_device(micro, SHAPE, "cpu", progress=False, **kwargs)
    with pytest.raises(ValueError, match="input"):
        for_device(micro, (3, 112, 112), "cpu", progress=False)
    assert not cache.exists()


def test_the_nearest_shipped_predictor_is_the_one_sharing_the_most_isa(monkeypatch):
    avx512 = {"fingerprint_id": "new", "device_type": "cpu", "isa": ["avx2", "fma", "avx512f", "amx_tile"]}
    avx2 = {"fingerprint_id": "new", "device_type": "cpu", "isa": ["avx2", "fma"]}
    assert local.nearest_shipped(avx512).hw == "intel-xeon-amx"
    assert local.nearest_shipped(avx2).hw == "cpu"
    own = LatencyPredictor.load("intel-xeon-amx").learned_.fingerprint
    assert local.nearest_shipped(own).hw == "intel-xeon-amx"


@pytest.mark.slow
def test_search_session_with_hw_local_calibrates_here_when_it_runs(cache, micro):
    session = SearchSession(micro, hw="local", input_shape=SHAPE, progress=False, max_evaluations=20,
                            latency_budget=0.9, population=10, parents=4, seed=0, proxy=lambda cfg: -cfg.mean)
    assert list(cache.glob("*.json")) == [] and "target" not in vars(session)  # the constructor measured nothing
    result = session.run()
    assert session.predictor.hw == result.hw == "local"
    assert result.predicted_ms > 0 and len(list(cache.glob("*.json"))) == 1


@pytest.mark.slow
def test_a_predictor_calibrated_in_onnxruntime_drives_search_and_validation_there(cache, micro):
    pytest.importorskip("onnxruntime")
    predictor = for_device(micro, SHAPE, "cpu", runtime="onnxruntime", progress=False)
    assert predictor.learned_.runtime == "onnxruntime" and predictor.learned_.fingerprint["clock"] == "wall"
    assert LatencyPredictor.load(next(cache.glob("*.json"))).learned_.runtime == "onnxruntime"
    session = SearchSession(micro, hw="local", runtime="onnxruntime", input_shape=SHAPE, progress=False,
                            max_evaluations=10, latency_budget=0.95, population=8, parents=4, seed=0,
                            proxy=lambda cfg: -cfg.mean)
    assert session.predictor.learned_.runtime == "onnxruntime"  # the cached calibration
    report = session.run().validate("cpu", repeats=3, warmup=1, rounds=1)
    assert report.runtime == "onnxruntime" and report.comparable, report.note


@pytest.mark.slow
def test_hw_local_on_a_swin_v2_calibrates_its_v2_blocks_and_stops_warning(cache, caplog):
    """A V1-only base predictor learns the V2 model's units here, so the calibrated one covers V2."""
    v2 = build_model("swinv2_micro")
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.predictor.unit_model"):
        predictor = for_device(v2, SHAPE, "cpu", base=LatencyPredictor.load("cpu"), progress=False)
        ms = predictor.predict_config(v2, SHAPE, search_space(v2).uniform(0.5))
    assert predictor.learned_.blocks == ["v1", "v2"] and ms > 0
    assert "no Swin V2 measurements" not in caplog.text
