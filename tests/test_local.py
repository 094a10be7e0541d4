"""A predictor calibrated on this device: hw="local", LatencyPredictor.for_device, the cache,
sparsevit-calibrate, and the calibration model underneath (group curves, residual curves and
their cross-validated weight)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

import sparsevit_sdk.local as local
from sparsevit_sdk import SearchSession, SearchSpace, build_model
from sparsevit_sdk.cli import calibrate as calibrate_cli
from sparsevit_sdk.predictor import LatencyPredictor
from sparsevit_sdk.profiler import load_profiles, measure_latency

SHAPE = (1, 3, 112, 112)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEVIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "predictors"


@pytest.fixture(scope="module")
def micro():
    return build_model("swin_micro")


def test_for_device_fixes_a_base_three_times_too_slow_and_caches_the_result(cache, micro, monkeypatch, caplog):
    base = LatencyPredictor.load("cpu")
    base._set_learned(unit_scale_={"*": [[0.0, 3.0]]})
    dense = SearchSpace.from_model(micro).dense()
    measured = measure_latency(micro, SHAPE, warmup=2, repeats=10, threads=1, clock="cpu").p10_ms
    assert base.predict_config(micro, dense, SHAPE) > 2 * measured  # the base is badly off here

    predictor = LatencyPredictor.for_device("cpu", micro, SHAPE, base=base, progress=False)
    assert predictor.hardware == "local" and not predictor.estimated
    assert predictor.threads_ == [1] and predictor.fingerprint_["clock"] == "cpu"
    assert predictor.calibration_["model_rows"] >= 10 and predictor.calibration_["layer_rows"] > 0
    assert abs(predictor.predict_config(micro, dense, SHAPE) / measured - 1) < 0.35
    assert len(list(cache.glob("*.json"))) == 1

    def no_measuring(*args, **kwargs):
        raise AssertionError("a cached calibration was measured again")

    monkeypatch.setattr(local, "profile_model", no_measuring)
    again = LatencyPredictor.for_device("cpu", micro, SHAPE, progress=False)
    assert again.to_dict()["unit_scale"] == predictor.to_dict()["unit_scale"]
    with pytest.raises(AssertionError, match="measured again"):
        LatencyPredictor.for_device("cpu", micro, SHAPE, refresh=True, progress=False)
    with pytest.raises(AssertionError, match="measured again"):  # another input shape is another calibration
        LatencyPredictor.for_device("cpu", micro, (1, 3, 140, 140), progress=False)
    # the entry holds the key it was written for: a valid predictor of another device in its slot is not used
    assert predictor.calibration_["cache_key"]["input_shape"] == list(SHAPE)
    (path,) = cache.glob("*.json")
    LatencyPredictor.load("intel-xeon-amx-2t").save(path)
    with pytest.raises(AssertionError, match="measured again"):
        LatencyPredictor.for_device("cpu", micro, SHAPE, progress=False)
    assert "was not written for this device" in caplog.text


def test_the_cache_key_names_device_model_shape_and_dtype(micro):
    fp = {"fingerprint_id": "abc", "threads": 1}
    arch = local.Architecture.from_model(micro)

    def key(*args) -> str:
        return local.cache_key(local.cache_fields(*args))
    keys = {key(fp, arch, SHAPE, "fp32"), key({**fp, "fingerprint_id": "abd"}, arch, SHAPE, "fp32"),
            key(fp, arch, (2, 3, 112, 112), "fp32"), key(fp, arch, SHAPE, "bf16"),
            key(fp, local.Architecture.from_model(build_model("swin_t")), SHAPE, "fp32"),
            key(fp, arch, SHAPE, "fp32", "eager", "Seg-0123")}
    assert len(keys) == 6


def test_an_unusable_cache_folder_is_refused_before_measuring(tmp_path, micro, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SPARSEVIT_CACHE", str(blocker))
    with pytest.raises(OSError, match="file"):
        LatencyPredictor.for_device("cpu", micro, SHAPE, progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"dtype": "fp8"}, "unknown dtype"),
    ({"threads": 0}, "threads must be >= 1"),
])
def test_for_device_refuses_bad_settings_before_measuring(cache, micro, kwargs, message):
    with pytest.raises(ValueError, match=message):
        LatencyPredictor.for_device("cpu", micro, SHAPE, progress=False, **kwargs)
    with pytest.raises(ValueError, match="input"):
        LatencyPredictor.for_device("cpu", micro, (3, 112, 112), progress=False)
    assert not cache.exists()


def test_the_nearest_shipped_predictor_is_the_one_sharing_the_most_isa(monkeypatch):
    avx512 = {"fingerprint_id": "new", "device_type": "cpu", "isa": ["avx2", "fma", "avx512f", "amx_tile"]}
    avx2 = {"fingerprint_id": "new", "device_type": "cpu", "isa": ["avx2", "fma"]}
    assert local.nearest_shipped(LatencyPredictor, avx512).hardware == "intel-xeon-amx"
    assert local.nearest_shipped(LatencyPredictor, avx2).hardware == "cpu"
    own = LatencyPredictor.load("intel-xeon-amx").fingerprint_
    assert local.nearest_shipped(LatencyPredictor, own).hardware == "intel-xeon-amx"


def test_search_session_with_hw_local_calibrates_here(cache, micro):
    session = SearchSession(micro, hw="local", input_shape=SHAPE, progress=False, max_evaluations=20,
                            latency_budget=0.9, population=10, parents=4, seed=0, proxy=lambda cfg: -cfg.mean)
    assert session.predictor.hardware == "local"
    result = session.run()
    assert result.predicted_ms > 0 and len(list(cache.glob("*.json"))) == 1


def test_sparsevit_calibrate_writes_the_predictor_and_reports_its_cross_validation(cache, tmp_path, capsys):
    out = tmp_path / "micro.json"
    assert calibrate_cli.main(["--model", "swin_micro", "--resolution", "112", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cross-validated on its" in printed and "within ±10 %" in printed
    assert LatencyPredictor.load(out).hardware == "local"


def test_sparsevit_calibrate_refuses_an_unwritable_output_before_measuring(cache, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert calibrate_cli.main(["--model", "swin_micro", "--resolution", "112", "--out", str(blocker / "p.json")]) == 2
    assert "--out" in capsys.readouterr().err and not cache.exists()


# ----------------------------------------------------------------- the calibration model


def test_residual_curves_follow_a_cache_edge_that_one_scale_per_stage_cannot():
    """Units-only calibration: stage 0 pairs at 672 px become twice as fast from 30 % sparsity on."""
    amd = load_profiles("profiles/cpu")
    rows = amd[(amd.model == "swin_micro") & (amd.img_h == 672) & (amd.layer != "model")].copy()
    edge = (rows.layer == "block_pair") & (rows.stage == 0) & (rows.sparsity >= 0.3)
    rows.loc[edge, ["p10_ms", "min_ms", "latency_ms", "p90_ms"]] *= 0.5
    calibrated = LatencyPredictor.calibrate(LatencyPredictor.load("cpu"), rows)
    pairs = rows[(rows.layer == "block_pair") & (rows.stage == 0)]
    ratio = calibrated.predict(pairs) / pairs.p10_ms.to_numpy()
    assert np.abs(ratio - 1).max() < 0.05


@pytest.mark.parametrize("base, device, curve_weight", [("cpu", "intel-xeon-amx", 0.0),
                                                       ("intel-xeon-amx", "cpu", 1.0)])
def test_cross_validation_decides_how_far_isolated_units_are_trusted(base, device, curve_weight):
    """On the Xeon the first swin_micro stage at 672 px halves its isolated time between 20 % and
    30 % sparsity, but the whole models do not: the curves are dropped there, kept on the EPYC."""
    df = load_profiles(f"profiles/{device}")
    rows = df[(df.model == "swin_micro") & (df.img_h == 672)]
    calibrated = LatencyPredictor.calibrate(LatencyPredictor.load(base), rows)
    assert calibrated.calibration_["curve_weight"] == curve_weight
    assert calibrated.calibration_["cv_within_10"] >= 90


def test_calibration_on_calibration_multiplies_group_curves():
    from sparsevit_sdk.predictor.transfer import _combine

    old = {"block_pair/0": [[0.0, 2.0], [0.8, 4.0]]}
    combined = _combine(old, {"block_pair/0": [[0.4, 0.5]], "rest": [[0.0, 3.0]]}, 1.0)
    assert combined["block_pair/0"] == [[0.0, 1.0], [0.4, 1.5], [0.8, 2.0]]
    assert combined["rest"] == [[0.0, 3.0]] and combined["*"] == [[0.0, 1.0]]


# ----------------------------------------------------------------- runtimes


def test_a_predictor_calibrated_in_onnxruntime_drives_search_and_validation_there(cache, micro):
    pytest.importorskip("onnxruntime")
    predictor = LatencyPredictor.for_device("cpu", micro, SHAPE, runtime="onnxruntime", progress=False)
    assert predictor.runtime_ == "onnxruntime" and predictor.fingerprint_["clock"] == "wall"
    assert LatencyPredictor.load(next(cache.glob("*.json"))).runtime_ == "onnxruntime"
    session = SearchSession(micro, hw="local", runtime="onnxruntime", input_shape=SHAPE, progress=False,
                            max_evaluations=10, latency_budget=0.9, population=8, parents=4, seed=0,
                            proxy=lambda cfg: -cfg.mean)
    assert session.predictor.runtime_ == "onnxruntime"  # the cached calibration
    report = session.run().validate("cpu", repeats=3, warmup=1, rounds=1)
    assert report.runtime == "onnxruntime" and report.comparable, report.note


def test_a_predictor_for_another_runtime_is_refused_naming_the_fix(micro):
    with pytest.raises(ValueError, match="predicts eager latencies, not compiled.*hw='local'"):
        SearchSession(micro, hw="cpu", runtime="compiled", input_shape=SHAPE, progress=False,
                      proxy=lambda cfg: -cfg.mean)


def test_profiles_without_a_runtime_column_are_eager_and_unknown_runtimes_are_refused():
    from sparsevit_sdk.dataset.schema import SchemaError, validate_frame

    rows = load_profiles("profiles/cpu")
    old = rows.drop(columns="runtime")
    assert set(validate_frame(old)["runtime"]) == {"eager"}
    with pytest.raises(SchemaError, match="unknown runtime values \\['tensorrt'\\]"):
        validate_frame(rows.assign(runtime="tensorrt"))


def test_whole_models_of_two_runtimes_are_not_mixed_in_one_predictor():
    rows = load_profiles("profiles/cpu")
    models = rows[rows.layer == "model"]
    mixed = pd.concat([rows, models.iloc[:5].assign(runtime="compiled")])
    with pytest.raises(ValueError, match="several runtimes.*one predictor per runtime"):
        LatencyPredictor.calibrate(LatencyPredictor.load("cpu"), mixed)


def test_a_search_on_a_cpu_predictor_measured_elsewhere_names_hw_local(micro, caplog):
    from sparsevit_sdk.profiler import device_fingerprint

    here = device_fingerprint("cpu", threads=1, clock="cpu")
    elsewhere = {**here, "name": "Some Other CPU", "fingerprint_id": "0123456789ab"}
    for fingerprint, warned in [(here, False), (elsewhere, True)]:
        predictor = LatencyPredictor.load("cpu")._set_learned(fingerprint_=fingerprint)
        caplog.clear()
        with caplog.at_level("WARNING"):
            SearchSession(micro, hw=predictor, input_shape=SHAPE, progress=False, proxy=lambda cfg: -cfg.mean)
        assert ("hw='local'" in caplog.text) == warned, caplog.text


def test_sparsevit_search_with_hw_local_uses_the_cached_calibration(cache, tmp_path, capsys):
    from sparsevit_sdk.cli import search as search_cli

    argv = ["--model", "swin_micro", "--hw", "local", "--budget", "0.9", "--resolution", "112x112", "--population",
            "6", "--parents", "3", "--generations", "1", "--proxy-images", "1", "--no-progress", "--out",
            str(tmp_path / "r.json")]
    assert search_cli.main(argv) == 0
    assert "local (measured predictor)" in capsys.readouterr().out
    (calibration,) = cache.glob("*.json")
    written = calibration.stat().st_mtime_ns
    assert search_cli.main([*argv[:-1], str(tmp_path / "r2.json")]) == 0
    assert list(cache.glob("*.json")) == [calibration] and calibration.stat().st_mtime_ns == written  # reused


def test_hw_local_on_a_swin_v2_calibrates_its_v2_blocks_and_stops_warning(cache, caplog):
    """A V1-only base predictor learns the V2 model's units here, so the calibrated one covers V2."""
    v2 = build_model("swinv2_micro")
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.predictor.latency"):
        predictor = LatencyPredictor.for_device("cpu", v2, SHAPE, base=LatencyPredictor.load("cpu"), progress=False)
        ms = predictor.predict_config(v2, SearchSpace.from_model(v2).uniform(0.5), SHAPE)
    assert predictor.blocks_ == ["v1", "v2"] and ms > 0
    assert "no Swin V2 measurements" not in caplog.text
