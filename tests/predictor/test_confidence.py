"""Every prediction carries the error its predictor showed on whole models held out of its fit."""

from __future__ import annotations

import logging

import numpy as np

from sparsevit_sdk import LatencyPredictor, SearchResult
from sparsevit_sdk import local as local_module
from sparsevit_sdk.dataset import load_profiles


def _recorded(device: str = "cpu"):
    rows = load_profiles(f"profiles/{device}")
    return rows[(rows.model == "swin_micro") & (rows.img_h == 224)]


def _with_busy_neighbour(rows, share: float = 0.5):
    """``share`` of the whole models timed 20-60 % slow, as beside a busy process."""
    rows = rows.copy()
    models = rows.index[rows.layer == "model"]
    rng = np.random.default_rng(0)
    hit = rng.choice(models, int(share * len(models)), replace=False)
    rows.loc[hit, ["p10_ms", "min_ms", "latency_ms", "p90_ms"]] *= rng.uniform(1.2, 1.6, (len(hit), 1))
    return rows


def test_a_calibration_carries_its_cross_validated_error_and_a_shipped_predictor_its_held_out_one():
    shipped = LatencyPredictor.load("cpu")
    held = shipped.expected_error
    assert held["models"] == shipped.learned_.metrics["xgboost"]["n"] and "held out" in held["how"]
    quiet = LatencyPredictor.calibrate(LatencyPredictor.load("intel-xeon-amx"), _recorded())
    error, cv = quiet.expected_error, quiet.learned_.calibration
    assert error == {"within_10": cv["cv_within_10"], "mape": cv["cv_mape"], "models": 33, "poor": False,
                     "how": "cross-validated on the whole models measured in calibration"}
    assert LatencyPredictor.from_dict(quiet.to_dict()).expected_error == error  # saved with the predictor


def test_an_estimate_claims_no_error_figure():
    assert LatencyPredictor.for_hardware("jetson-orin").expected_error is None


def test_a_poor_calibration_is_reported_once_not_silent(tmp_path, caplog):
    noisy = LatencyPredictor.calibrate(LatencyPredictor.load("intel-xeon-amx"), _with_busy_neighbour(_recorded()))
    error = noisy.expected_error
    assert error["poor"] and error["within_10"] < 90
    path = tmp_path / "entry.json"
    with caplog.at_level(logging.WARNING, logger=local_module.__name__):
        assert local_module._checked(noisy, path) is noisy
        local_module._checked(noisy, path)  # the same calibration again: already said
    said = [r.getMessage() for r in caplog.records if "within ±10 %" in r.getMessage()]
    assert len(said) == 1 and f"{error['within_10']:.0f} % of 33 whole models" in said[0] and "refresh=True" in said[0]


def test_the_summary_gives_the_band_and_names_a_poor_predictor(tmp_path):
    from sparsevit_sdk import SearchSession, build_model
    from sparsevit_sdk.accuracy import AgreementProxy
    from sparsevit_sdk.demo import probe_images

    micro = build_model("swin_micro")
    proxy = AgreementProxy(micro, probe_images((1, 3, 64, 64), num_images=1)[0])
    noisy = LatencyPredictor.calibrate(LatencyPredictor.load("intel-xeon-amx"), _with_busy_neighbour(_recorded()))
    result = SearchSession(micro, noisy, input_shape=(1, 3, 224, 224), proxy=proxy, latency_budget=0.95, population=4,
                           parents=2, generations=0, progress=False).run()
    error = noisy.expected_error
    summary = result.summary()
    assert f"ms ± {error['mape']:.1f} % vs dense" in summary and "the predictor is poor here" in summary
    loaded = SearchResult.load(result.save(tmp_path / "r.json"))
    assert loaded.expected_error == error and loaded.summary() == summary
