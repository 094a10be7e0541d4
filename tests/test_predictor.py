"""Latency predictors on a small dataset measured here by the profiler's own sweep."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from sparsevit_sdk import SearchSpace, build_model
from sparsevit_sdk import hardware as hardware_module
from sparsevit_sdk.cli.fit import main as fit_main
from sparsevit_sdk.hardware import get_hardware, list_hardware
from sparsevit_sdk.predictor import Architecture, LatencyPredictor, accuracy, agreement, config_units, plot_held_out
from sparsevit_sdk.predictor import latency as latency_module
from sparsevit_sdk.predictor.features import unit_features
from sparsevit_sdk.profiler import SweepSettings, load_profiles, profile_model

SHAPE = (1, 3, 96, 96)


@pytest.fixture(scope="session")
def profile_dir(tmp_path_factory) -> Path:
    """swin_micro timed unit by unit and as whole models at two small resolutions, the way the
    shipped CPU profile was (one thread, thread CPU-time clock, quietest of two rounds)."""
    out = tmp_path_factory.mktemp("profiles")
    settings = SweepSettings(warmup=1, repeats=4, model_repeats=4, random_configs=12, rounds=2)
    profile_model("swin_micro", resolutions=["64", "96"], hw="cpu", out=out, settings=settings, threads=1,
                  clock="cpu", progress=False)
    return out / "cpu"


@pytest.fixture(scope="session")
def measured(profile_dir) -> pd.DataFrame:
    return load_profiles(profile_dir)


@pytest.fixture(scope="session")
def fitted(measured) -> LatencyPredictor:
    return LatencyPredictor(n_estimators=100).fit(measured)


@pytest.fixture()
def shipped(fitted, tmp_path, monkeypatch):
    """Make the fitted predictor the only shipped one, as ``predictors/cpu.json``."""
    path = fitted.save(tmp_path / "cpu.json")
    for module in (hardware_module, latency_module):
        monkeypatch.setattr(module, "shipped_predictors", lambda: {"cpu": path})
    return path


def test_units_match_the_profilers_rows(measured):
    """Every unit the predictor builds for a config has the features of a row the profiler measured."""
    model = build_model("swin_micro")
    cfg = SearchSpace.from_model(model).uniform(0.5)
    units = config_units(Architecture.from_model(model), SHAPE, "fp32",
                         cfg.block_sparsity(model.signature, model.depths))
    assert set(units.layer) == {"patch_embed", "patch_merge", "score", "block_pair", "norm"}
    rows = measured[(measured.img_h == 96) & (measured.layer != "model")]
    seen = {(kind, *f) for kind, f in zip(rows.layer, unit_features(rows).round(6).tolist())}
    for kind, f in zip(units.layer, unit_features(units).round(6).tolist()):
        assert (kind, *f) in seen, kind


def test_fit_predicts_held_out_models(fitted, measured):
    m = fitted.metrics_
    n_models = int((measured.layer == "model").sum())
    assert m["excluded"] == len(fitted.fit_keys_) > 0 and m["xgboost"]["n"] + m["excluded"] == n_models
    assert m["xgboost"]["mape"] < 25  # loose: tiny models on a shared CPU are mostly noise and overhead
    assert fitted.statistic_ == "p10_ms" and fitted.threads_ == [1] and not fitted.estimated
    assert fitted.fingerprint_["clock"] == "cpu"  # the sidecar from the frame's attrs: validation can match it
    units = measured[(measured.layer == "block_pair") & (measured.img_h == 96)]
    pred = fitted.predict(units)
    assert pred.shape == (len(units),) and (pred > 0).all()
    assert accuracy(pred, units.p10_ms)["spearman"] > 0.8


def test_evaluate_never_judges_fitted_rows(fitted, measured):
    fit_rows = measured[measured.layer == "model"].apply(latency_module._model_key, axis=1).isin(fitted.fit_keys_)
    with pytest.raises(ValueError, match="every one was used in fitting"):
        fitted.evaluate(measured[(measured.layer != "model") | fit_rows.reindex(measured.index, fill_value=False)])


def test_held_out_plot_shows_what_evaluate_scores(fitted, measured, tmp_path):
    held = fitted.held_out(measured)
    assert accuracy(held["predicted_ms"], held["p10_ms"]) == fitted.metrics_["xgboost"]
    fig = plot_held_out(fitted, measured, tmp_path / "fit.png")
    points = sum(len(c.get_offsets()) for c in fig.axes[0].collections if isinstance(c, PathCollection))
    assert points == len(held) and (tmp_path / "fit.png").stat().st_size > 0
    assert f"{len(held)} held-out models" in fig.axes[0].get_title()


def test_fit_cli_writes_predictor_and_plot(profile_dir, tmp_path, capsys):
    out, png = tmp_path / "p.json", tmp_path / "fit.png"
    args = ["--profiles", str(profile_dir), "--out", str(out), "--plot", str(png), "--n-estimators", "50"]
    assert fit_main(args) == 0
    assert LatencyPredictor.load(out).fingerprint_["clock"] == "cpu"  # the sidecar travels into the file
    assert png.stat().st_size > 0 and f"wrote {png}" in capsys.readouterr().out


def test_config_predictions_are_consistent(fitted):
    model = build_model("swin_micro")
    space = SearchSpace.from_model(model)
    configs = [space.sample(i) for i in range(50)]
    batch = fitted.predict_configs(model, configs, SHAPE)
    assert batch[7] == pytest.approx(fitted.predict_config(model, configs[7], SHAPE))
    assert fitted.predict_config(model, space.dense(), SHAPE) > fitted.predict_config(model, space.sparsest(), SHAPE)
    blocks = SearchSpace.from_model(model, granularity="block")
    per_block = blocks.config([r for r in configs[3].ratios for _ in range(2)])
    assert fitted.predict_config(model, per_block, SHAPE) == pytest.approx(batch[3])
    other = build_model("swin_t")
    with pytest.raises(ValueError, match="made for model"):
        fitted.predict_config(other, configs[0], SHAPE)


def test_batch_prediction_is_fast(fitted):
    model = build_model("swin_micro")
    space = SearchSpace.from_model(model)
    configs = [space.sample(i) for i in range(10_000)]
    fitted.predict_configs(model, configs[:10], SHAPE)  # tables for this shape
    start = time.perf_counter()
    fitted.predict_configs(model, configs, SHAPE)
    assert time.perf_counter() - start < 1.0


def test_save_load_round_trip(fitted, tmp_path):
    path = fitted.save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    assert data["statistic"] == "p10_ms" and data["threads"] == [1] and data["versions"]["xgboost"]
    assert data["fingerprint"] and data["metrics"]["xgboost"]["n"] > 0
    loaded = LatencyPredictor.load(path)
    model = build_model("swin_micro")
    configs = [SearchSpace.from_model(model).sample(i) for i in range(20)]
    assert np.array_equal(loaded.predict_configs(model, configs, SHAPE), fitted.predict_configs(model, configs, SHAPE))


def test_wrong_files_are_refused(fitted, tmp_path):
    pickled = tmp_path / "p.pkl"
    pickled.write_bytes(b"\x80\x04\x95\x00")
    with pytest.raises(ValueError, match="not JSON.*never pickles"):
        LatencyPredictor.load(pickled)
    data = fitted.to_dict()
    for change, message in [({"format": "other"}, "not a sparsevit latency predictor"),
                            ({"schema_version": 99}, "schema version 99"),
                            ({"features": ["dim"]}, "fitted on features"),
                            ({"units": {}}, "corrupt predictor file")]:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(ValueError, match=message) as err:
            LatencyPredictor.load(path)
        assert str(path) in str(err.value) and "sparsevit-fit" in str(err.value)
    with pytest.raises(ValueError, match=r"for_hardware\('nowhere'\)"):
        LatencyPredictor.load("nowhere")


def test_unfitted_predictor_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        LatencyPredictor().predict_config(build_model("swin_micro"), None, SHAPE)


def test_unknown_hardware_lists_known_targets():
    known = "known targets: cpu, intel-xeon-amx, intel-xeon-amx-2t, jetson-orin.*hw='local'"
    with pytest.raises(ValueError, match=known):
        get_hardware("tpu-v9")
    with pytest.raises(ValueError, match="unknown hardware 'tpu-v9'"):
        LatencyPredictor.for_hardware("tpu-v9")


def test_estimated_targets_are_flagged(shipped, caplog):
    assert get_hardware("cpu").predictor == shipped and not get_hardware("cpu").estimated
    assert not LatencyPredictor.for_hardware("cpu").estimated
    model = build_model("swin_micro")
    dense = SearchSpace.from_model(model).dense()
    ms = {}
    for name in [n for n in list_hardware() if get_hardware(n).spec.kind == "gpu"]:
        assert get_hardware(name).estimated and get_hardware(name).predictor is None
        with caplog.at_level(logging.WARNING):
            est = LatencyPredictor.for_hardware(name)
        assert est.estimated and est.hardware == name and "estimated" in repr(est)
        assert "estimated" in caplog.text and name in caplog.text
        ms[name] = est.predict_config(model, dense, SHAPE)
    assert all(v > 0 for v in ms.values())
    assert ms["h100"] <= ms["a100"] <= ms["t4"]  # more compute, more bandwidth: never slower
    with pytest.raises(ValueError, match="CPU target 'intel-xeon-amx'.*hw='local'"):
        LatencyPredictor.for_hardware("intel-xeon-amx")  # its file is not shipped in this fixture


def test_calibration_fixes_an_estimate(shipped, measured):
    """Ten measured whole models turn a spec estimate (a GPU's) into a usable predictor of
    the measured device; judged on the other measured models."""
    base = LatencyPredictor.for_hardware("h100")
    models = measured[measured.layer == "model"]
    sample = models[~models.apply(latency_module._model_key, axis=1).isin(base.fit_keys_)].sample(10, random_state=0)
    calibrated = LatencyPredictor.calibrate(base, sample)
    assert not calibrated.estimated and calibrated.calibration_["model_rows"] == 10
    before, after = base.evaluate(measured), calibrated.evaluate(measured)
    assert set(sample.apply(latency_module._model_key, axis=1)) <= set(calibrated.fit_keys_)
    assert after["excluded"] == before["excluded"] + 10 and before["estimated"] and not after["estimated"]
    # calibration at least halves the error and moves most configs within ±10 % (the estimate has ~none there)
    assert after["xgboost"]["mape"] < min(15, before["xgboost"]["mape"] / 2)
    assert after["xgboost"]["within_10"] >= before["xgboost"]["within_10"] + 40


def test_layer_calibration_moves_units_toward_measurements(shipped, measured):
    base = LatencyPredictor.for_hardware("a100")
    units = measured[measured.layer == "block_pair"]
    calibrated = LatencyPredictor.calibrate(base, units.sample(10, random_state=0))
    before = accuracy(base.predict(units), units.p10_ms)["mape"]
    after = accuracy(calibrated.predict(units), units.p10_ms)["mape"]
    assert after < before / 2


def test_features_are_finite_and_agreement_is_symmetric(measured):
    units = measured[measured.layer != "model"]
    assert np.isfinite(unit_features(units)).all()
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.05, 2.5, 3.0])
    assert agreement(a, b) == agreement(b, a) == pytest.approx(200 / 3)


def test_a_predictor_says_when_it_never_saw_the_block_kind(fitted, caplog):
    """fitted knows Swin V1 only: a V2 model gets its numbers with a warning that names hw='local'."""
    assert fitted.blocks_ == ["v1"]
    v2 = build_model("swinv2_micro")
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.predictor.latency"):
        ms = fitted.predict_config(v2, SearchSpace.from_model(v2).uniform(0.5), SHAPE)
    assert ms > 0 and "no Swin V2 measurements" in caplog.text and "hw='local'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.predictor.latency"):
        fitted.predict_config(build_model("swin_micro"), SearchSpace.from_model(build_model("swin_micro")).dense(),
                              SHAPE)
    assert "Swin" not in caplog.text


def test_the_v2_feature_marks_only_v2_blocks_and_mergings():
    units = pd.concat([config_units(Architecture.from_model(build_model(name)), SHAPE, "fp32", [[0.5, 0.5]] * 4)
                       for name in ("swin_micro", "swinv2_micro")])
    v2 = unit_features(units)[:, list(latency_module.FEATURES).index("v2")]
    expected = units["signature"].str.startswith("swinv2-") & units["layer"].isin(["block_pair", "patch_merge"])
    assert (v2 == expected.to_numpy()).all() and v2.any()
