"""predictor/latency.py: LatencyPredictor fitted on a small dataset measured here by the profiler's own sweep;
scikit-learn's conventions."""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pandas as pd
import pytest
import sklearn.exceptions

from sparsevit_sdk import LatencyPredictor, build_model, search_space
from sparsevit_sdk.predictor import accuracy
from sparsevit_sdk.predictor.rows import model_key

SHAPE = (1, 3, 96, 96)


def test_fit_predicts_held_out_models(fitted, measured):
    m = fitted.learned_.metrics
    n_models = int((measured.layer == "model").sum())
    assert m["excluded"] == len(fitted.learned_.fit_keys) > 0 and m["xgboost"]["n"] + m["excluded"] == n_models
    assert m["xgboost"]["mape"] < 25  # loose: tiny models on a shared CPU are mostly noise and overhead
    assert fitted.learned_.statistic == "p10_ms" and fitted.learned_.threads == [1] and not fitted.estimated
    assert fitted.learned_.fingerprint["clock"] == "cpu"  # the sidecar from the frame's attrs: validation can match it
    units = measured[(measured.layer == "block_pair") & (measured.img_h == 96)]
    pred = fitted.predict(units)
    assert pred.shape == (len(units),) and (pred > 0).all()
    assert accuracy(pred, units.p10_ms)["spearman"] > 0.8


def test_evaluate_never_judges_fitted_rows(fitted, measured):
    fit_rows = measured[measured.layer == "model"].apply(model_key, axis=1).isin(fitted.learned_.fit_keys)
    with pytest.raises(ValueError, match="every one was used in fitting"):
        fitted.evaluate(measured[(measured.layer != "model") | fit_rows.reindex(measured.index, fill_value=False)])


def test_config_predictions_are_consistent(fitted):
    model = build_model("swin_micro")
    space = search_space(model)
    configs = [space.sample(i) for i in range(50)]
    batch = fitted.predict_configs(model, SHAPE, configs)
    assert batch[7] == pytest.approx(fitted.predict_config(model, SHAPE, configs[7]))
    assert fitted.predict_config(model, SHAPE, space.dense()) > fitted.predict_config(model, SHAPE, space.sparsest())
    blocks = search_space(model, granularity="block")
    per_block = blocks.config([r for r in configs[3].ratios for _ in range(2)])
    assert fitted.predict_config(model, SHAPE, per_block) == pytest.approx(batch[3])
    other = build_model("swin_t")
    with pytest.raises(ValueError, match="made for model"):
        fitted.predict_config(other, SHAPE, configs[0])


def test_batch_prediction_is_fast(fitted):
    model = build_model("swin_micro")
    space = search_space(model)
    configs = [space.sample(i) for i in range(10_000)]
    fitted.predict_configs(model, SHAPE, configs[:10])  # tables for this shape
    start = time.perf_counter()
    fitted.predict_configs(model, SHAPE, configs)
    assert time.perf_counter() - start < 1.0


def test_a_predictor_says_when_it_never_saw_the_block_kind(fitted, caplog):
    """fitted knows Swin V1 only: a V2 model gets its numbers with a warning that names hw='local'."""
    assert fitted.learned_.blocks == ["v1"]
    v2 = build_model("swinv2_micro")
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.predictor.unit_model"):
        ms = fitted.predict_config(v2, SHAPE, search_space(v2).uniform(0.5))
    assert ms > 0 and "no Swin V2 measurements" in caplog.text and "hw='local'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.predictor.unit_model"):
        fitted.predict_config(build_model("swin_micro"), SHAPE,
                              search_space(build_model("swin_micro")).dense())
    assert "Swin" not in caplog.text


SHAPE = (1, 3, 64, 64)


@pytest.mark.parametrize("call", [
    lambda p: p.hw, lambda p: p.to_dict(), lambda p: p.save("never.json"),
    lambda p: p.predict_config(build_model("swin_micro"), SHAPE, None)])
def test_unfitted_predictor_raises_sklearns_not_fitted_error(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(sklearn.exceptions.NotFittedError, match="not fitted"):
        call(LatencyPredictor())
    assert not (tmp_path / "never.json").exists()


def test_the_learned_record_is_immutable_and_calibration_leaves_the_base_as_it_was(measured):
    base = LatencyPredictor.load("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.learned_.overhead_ms = 0.0
    before = base.to_dict()
    calibrated = LatencyPredictor.calibrate(base, measured[measured.layer == "model"].head(10))
    assert base.to_dict() == before and calibrated.learned_ is not base.learned_


def test_a_predictor_prices_with_the_record_it_holds():
    predictor = LatencyPredictor.load("cpu")
    model = build_model("swin_micro")
    dense = search_space(model).dense()
    before = predictor.predict_config(model, SHAPE, dense)
    doubled = LatencyPredictor.from_dict({**predictor.to_dict(), "unit_scale": {"*": [[0.0, 2.0]]}})
    after = doubled.predict_config(model, SHAPE, dense)
    scale = predictor.learned_.scale["v1"]
    units = (before - predictor.learned_.overhead_ms) / scale
    assert np.isclose(after, scale * 2 * units + predictor.learned_.overhead_ms)


def test_fit_refuses_an_overhead_fraction_outside_zero_one():
    with pytest.raises(ValueError, match=r"overhead_fraction must be in \(0, 1\)"):
        LatencyPredictor(overhead_fraction=1.5).fit(pd.DataFrame())
