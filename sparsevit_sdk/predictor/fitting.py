"""Fitting a predictor on one device's profile: per unit kind an analytic base and a booster
on the log-ratio to it, then how units add up inside whole models.

Trees cannot extrapolate, so each unit kind starts from a non-negative fit of ``latency ≈
c0 + c1·FLOPs + c2·bytes`` (``c0`` is the fixed per-call cost) and the booster learns the
log-ratio to it, which stays bounded where the base is right and keeps predictions sane at
sizes outside the data.  A whole model is ``scale · Σ units + overhead``, fitted on a share
of the whole-model rows that judging then never scores; ``scale`` is one per block kind
(Swin V1, V2), since how much slower units run inside a model than alone (their caches
shared with the rest of the model) depends on what the blocks do.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.optimize import least_squares, nnls

from ..arch import signature_blocks
from ..dataset.merge import select_device
from ..dataset.schema import FORWARD_KINDS, validate_frame
from .costs import layer_sums
from .features import FEATURES, UNIT_KINDS, unit_features
from .judging import evaluate
from .rest import rest_table
from .rows import (
    block_kinds,
    draw_rows,
    fitted_statistic,
    model_gflops,
    model_key,
    one_device,
    one_runtime,
    runnable,
    with_mlp_ratio,
)
from .state import Learned
from .unit_model import Tables, basis

logger = logging.getLogger(__name__)


def fit(params: dict[str, Any], df: pd.DataFrame, fingerprint: dict | None) -> Learned:
    """What a predictor with ``params`` (:meth:`LatencyPredictor.get_params`) learns from the
    profile ``df`` of one device (see :meth:`LatencyPredictor.fit`)."""
    if not 0.0 < params["overhead_fraction"] < 1.0:
        raise ValueError(f"overhead_fraction must be in (0, 1), got {params['overhead_fraction']}: it is the share "
                         "of whole-model rows that fit the overhead, and the rest judge the predictor")
    sidecar = select_device(df, mix=True)[1]
    df = validate_frame(df, "fit data")
    hw = one_device(df, "fit one predictor per device")
    statistic = fitted_statistic(params["statistic"], df)
    layers = runnable(df[~df["layer"].isin(FORWARD_KINDS)])
    missing = [k for k in UNIT_KINDS if k not in set(layers["layer"])]
    if missing:
        raise ValueError(f"the data has no {missing} rows; profile every unit kind ({UNIT_KINDS})")
    linear, boosters = {}, {}
    for kind in UNIT_KINDS:
        rows = layers[layers["layer"] == kind]
        linear[kind], boosters[kind] = _fit_kind(params, rows, rows[statistic].to_numpy(float))
    models = df[df["layer"] == "model"]
    learned = Learned(
        hw=hw, estimated=False, estimate=None, statistic=statistic, dtype=str(layers["dtype"].mode().iloc[0]),
        threads=sorted(int(t) for t in layers["threads"].unique()), runtime=one_runtime(models),
        fingerprint=fingerprint or sidecar or {"fingerprint_id": sorted(df["fingerprint_id"].unique())},
        linear=linear, boosters=boosters, unit_scale={}, unit_curves={}, scale={}, overhead_ms=0.0,
        ms_per_gflop=float("nan"), calibration={}, metrics={}, fit_keys=[], blocks=block_kinds(layers),
        rest=rest_table(df, statistic))
    tables = Tables(learned)  # the overhead's fit and judging price units alike
    chosen = with_mlp_ratio(draw_rows(models, params["overhead_fraction"], str(params["random_state"])), df)
    if len(chosen):
        scale, overhead_ms = _fit_overhead(learned, tables, chosen)
        learned = learned.replace(
            scale=scale, overhead_ms=overhead_ms,
            ms_per_gflop=float(np.median(chosen[statistic].to_numpy(float) / model_gflops(chosen))),
            fit_keys=sorted(chosen.apply(model_key, axis=1)))
    else:
        logger.warning("no whole-model rows: overhead not fitted and nothing to judge the predictor on")
    if len(models) > len(chosen):
        learned = learned.replace(metrics=evaluate(learned, df, tables))
    return learned


def _fit_kind(params: dict[str, Any], rows: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, xgb.Booster]:
    """Analytic base by non-negative least squares on relative error, then a booster on the
    log-ratio to it."""
    base = basis(rows)
    norm = base.mean(axis=0) + 1e-30
    coef, _ = nnls(base / norm / y[:, None], np.ones(len(y)))
    coef = coef / norm
    if not coef.any():  # degenerate data: a constant at the geometric mean
        coef[0] = float(np.exp(np.log(y).mean()))
    data = xgb.DMatrix(unit_features(rows), label=np.log(y), base_margin=np.log(base @ coef),
                       feature_names=list(FEATURES))
    booster_params = {"max_depth": params["max_depth"], "eta": params["learning_rate"], "subsample": 0.8,
                      "colsample_bytree": 0.8, "min_child_weight": 2, "seed": params["random_state"], "nthread": 1}
    return coef, xgb.train(booster_params, data, num_boost_round=params["n_estimators"])


def _fit_overhead(learned: Learned, tables: Tables, models: pd.DataFrame) -> tuple[dict[str, float], float]:
    """``measured ≈ scale[block kind] · Σ units + overhead_ms`` on relative error, with a
    soft-L1 loss: a whole model measured while another process held the memory bus is an
    outlier that should not move the fit."""
    sums = layer_sums(tables, models)
    y = models[learned.statistic].to_numpy(float)
    kinds, which = np.unique(signature_blocks(models["signature"]), return_inverse=True)
    if len(models) == 1:
        return {str(kinds[0]): 1.0}, max(float(y[0] - sums[0]), 0.0)
    k = len(kinds)
    fit = least_squares(lambda t: (t[which] * sums + t[k]) / y - 1.0, [1.0] * k + [0.0], loss="soft_l1",
                        f_scale=0.05, bounds=([0.5] * k + [0.0], [2.0] * k + [np.inf]))
    return {str(kind): float(s) for kind, s in zip(kinds, fit.x[:k])}, float(fit.x[k])
