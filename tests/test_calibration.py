"""A calibration measures whole models until its held-out error meets the target or its time is up, chooses
them where its folds disagree, times a step again when the machine ran slow, and says when it stopped short."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from sparsevit_sdk import LatencyPredictor, build_model, search_space
from sparsevit_sdk import calibration as calibration_module
from sparsevit_sdk.calibration import MIN_MODELS, STEP, default_time_limit
from sparsevit_sdk.dataset import load_profiles
from sparsevit_sdk.local import for_device
from sparsevit_sdk.predictor.rows import row_config

SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def micro():
    return build_model("swin_micro")


def test_the_time_limit_is_two_hundred_dense_forwards_between_one_and_two_minutes():
    assert default_time_limit(10.0) == 60.0 and default_time_limit(450.0) == 90.0
    assert default_time_limit(1300.0) == 120.0  # a Swin-T forward at 672 on a slow 2-core CPU


@pytest.mark.slow
def test_a_calibration_stopped_by_its_time_limit_records_it_and_says_so(micro, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SPARSEVIT_CACHE", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="sparsevit_sdk.local"):
        predictor = for_device(micro, SHAPE, "cpu", progress=False, time_limit=0.01)
    record = predictor.learned_.calibration
    assert record["met"] is False and record["steps"] == 1 and record["time_limit_s"] == 0.0
    assert record["model_rows"] == 5 < MIN_MODELS  # the first step only: too few models to stop on
    (said,) = [r.getMessage() for r in caplog.records if "time limit" in r.getMessage()]
    assert "short of its target (90 % within ±10 % of at least 8 whole models)" in said and "time_limit=" in said
    # the record travels with the predictor and its cache entry
    again = for_device(micro, SHAPE, "cpu", progress=False)
    assert again.learned_.calibration == record


@pytest.mark.slow
def test_a_step_timed_while_the_probe_ran_slow_is_timed_again(micro, monkeypatch):
    """The probe is forced slow after the first step (a busy neighbour for a moment): that step is timed again,
    and the machine's speed recorded is the fastest probe seen."""
    probes = iter([1.0, 1.5, 1.0] + [1.0] * 100)
    monkeypatch.setattr(calibration_module, "reference_ms", lambda clock: next(probes))
    predictor = for_device(micro, SHAPE, "cpu", progress=False, cache=False, time_limit=1000)
    record = predictor.learned_.calibration
    assert record["remeasured_steps"] == 1 and record["probe_ms"] == 1.0
    assert record["model_rows"] >= MIN_MODELS or not record["met"]


def test_the_next_models_are_those_the_folds_disagree_on_most():
    rows = load_profiles("profiles/cpu")
    rows = rows[(rows.model == "swin_micro") & (rows.img_h == 224)]
    _, folds = LatencyPredictor.calibrate_with_folds(LatencyPredictor.load("intel-xeon-amx"), rows)
    assert len(folds) == 5
    model = build_model("swin_micro")
    space = search_space(model)
    candidates = calibration_module._fresh(space, np.random.default_rng(0), 32, set())
    assert len(set(candidates)) == 32
    picked = calibration_module._most_disputed(folds, model, (1, 3, 224, 224), candidates)
    spread = np.log([fold.predict_configs(model, (1, 3, 224, 224), candidates) for fold in folds]).std(axis=0)
    assert len(picked) == STEP and sorted(spread[[candidates.index(c) for c in picked]]) == sorted(spread)[-STEP:]
    # without folds yet (under five models), the first candidates in order
    assert calibration_module._most_disputed([], model, (1, 3, 224, 224), candidates) == candidates[:STEP]


def test_the_folds_of_a_calibration_leave_their_models_out():
    rows = load_profiles("profiles/cpu")
    rows = rows[(rows.model == "swin_micro") & (rows.img_h == 224)]
    calibrated, folds = LatencyPredictor.calibrate_with_folds(LatencyPredictor.load("intel-xeon-amx"), rows)
    models = rows[rows.layer == "model"]
    model, shape = build_model("swin_micro"), (1, 3, 224, 224)
    configs = [row_config(row, model.architecture) for _, row in models.iterrows()]
    predicted = np.array([fold.predict_configs(model, shape, configs) for fold in folds])
    assert not np.allclose(predicted, predicted[0])  # each fold fitted its own scales
    cv = np.abs(predicted[np.arange(len(configs)) % 5, np.arange(len(configs))] / models.p10_ms.to_numpy() - 1)
    # what the folds predict for the models they left out is the calibration's cross-validated figure
    assert calibrated.learned_.calibration["cv_mape"] == pytest.approx(100 * cv.mean(), rel=0.05)


def test_a_step_is_begun_only_if_it_fits_priced_per_forward_by_the_last_one():
    """The next step (STEP configs, maybe timed harder) is priced from the last step's seconds per forward: a
    Swin-T at 672 px stopped at 75 s of 120 with time for four more models when a step was priced as a whole."""
    from sparsevit_sdk.calibration import CHEAP_MODELS, MODELS, SAFETY, _left

    now = time.monotonic()
    five = [None] * 5
    left = _left(now - 10, 20, now - 4, five, MODELS, STEP, MODELS)  # 4 s for 5 models: 4 more cost 3.2 s
    assert left == pytest.approx(20 - 10 - SAFETY * 4 * STEP / 5, abs=0.05)
    harder = _left(now - 10, 20, now - 4, five, MODELS, STEP, CHEAP_MODELS)
    assert harder == pytest.approx(20 - 10 - SAFETY * 4 * STEP * CHEAP_MODELS.model_calls / (5 * MODELS.model_calls),
                                   abs=0.05)
    assert _left(now, None, now, five, MODELS) == float("inf")  # before the limit is known
