"""Judging a fitted predictor: the whole-model rows it never saw, its accuracy on them, and
two baselines (FLOPs-proportional, and a lookup table of measured units as once-for-all does)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..dataset.schema import FORWARD_KINDS
from .metrics import accuracy
from .rows import model_gflops, model_key, model_units, runnable, with_mlp_ratio
from .state import Learned
from .unit_model import Tables, whole_ms


def models_ms(learned: Learned, models: pd.DataFrame, df: pd.DataFrame, tables: Tables | None = None) -> np.ndarray:
    """Predicted ms of the whole-model rows ``models`` of the validated profile ``df`` (which
    gives their MLP ratio), fitted on or not."""
    return whole_ms(learned, with_mlp_ratio(models, df), tables)


def held_out(learned: Learned, df: pd.DataFrame, tables: Tables | None = None) -> pd.DataFrame:
    """The whole-model rows of the validated profile ``df`` whose key is not in
    ``fit_keys``, with ``predicted_ms``; ``attrs["excluded"]`` counts the others."""
    models = df[df["layer"] == "model"].reset_index(drop=True)
    held = models[~models.apply(model_key, axis=1).isin(set(learned.fit_keys))] if len(models) else models
    if held.empty:
        raise ValueError("no whole-model rows left to judge on: every one was used in fitting (or there are "
                         "none); profile more configs or evaluate on another dataset")
    held = held.assign(predicted_ms=models_ms(learned, held, df, tables))
    held.attrs["excluded"] = int(len(models) - len(held))
    return held


def evaluate(learned: Learned, df: pd.DataFrame, tables: Tables | None = None) -> dict[str, Any]:
    """Accuracy of ``learned`` and of the two baselines on :func:`held_out` rows of the
    validated profile ``df`` (see :meth:`LatencyPredictor.evaluate`)."""
    held = held_out(learned, df, tables)
    y = held[learned.statistic].to_numpy(float)
    return {
        "hw": learned.hw, "estimated": learned.estimated, "statistic": learned.statistic,
        "excluded": held.attrs["excluded"],
        "xgboost": accuracy(held["predicted_ms"].to_numpy(float), y),
        "flops": accuracy(learned.ms_per_gflop * model_gflops(held), y),
        "lookup": accuracy(lookup_ms(df, held, learned.statistic), y),
    }


POOR_WITHIN_10 = 90.0  # below this share of held-out whole models within ±10 %, a predictor is called poor


def expected_error(learned: Learned) -> dict[str, Any] | None:
    """How far ``learned``'s whole-model predictions fell from whole models it was not fitted on, the
    figure every prediction carries: ``within_10`` (% of them within ±10 %), ``mape`` (%), ``models``
    (how many) and ``how`` they were held out; ``poor`` when under :data:`POOR_WITHIN_10`.

    A calibration reports its cross-validation over the whole models it measured (each fold fitted
    without it); a fitted profile its held-out rows.  None for a spec estimate: nothing was measured,
    so nothing says how far off it is."""
    calibration, metrics = learned.calibration, learned.metrics.get("xgboost")
    if learned.estimated:
        return None
    if "cv_within_10" in calibration:
        within, mape = float(calibration["cv_within_10"]), float(calibration["cv_mape"])
        models, how = int(calibration["model_rows"]), "cross-validated on the whole models measured in calibration"
    elif metrics:
        within, mape, models = float(metrics["within_10"]), float(metrics["mape"]), int(metrics["n"])
        how = "whole models of its profile held out of the fit"
    else:
        return None
    return {"within_10": within, "mape": mape, "models": models, "how": how, "poor": within < POOR_WITHIN_10}


def lookup_ms(df: pd.DataFrame, models: pd.DataFrame, statistic: str) -> np.ndarray:
    """The lookup-table baseline: per whole-model row of ``models``, the sum of the measured
    ``statistic`` (ms) of its units in the profile ``df``; NaN where a unit was never measured."""
    layers = runnable(df[~df["layer"].isin(FORWARD_KINDS)])

    def key(frame: pd.DataFrame) -> pd.Series:
        kept = np.where(frame["layer"] == "block_pair", frame["windows_kept"], 0)
        return (frame["layer"].astype(str) + "|" + frame["signature"].astype(str) + "|"
                + frame["stage"].astype(str) + "|" + frame["img_h"].astype(str) + "x" + frame["img_w"].astype(str)
                + "|" + frame["batch"].astype(str) + "|" + frame["dtype"].astype(str) + "|" + kept.astype(str))

    table = layers.groupby(key(layers))[statistic].mean()
    return np.array([float((units["weight"] * key(units).map(table)).sum(skipna=False))
                     for units in model_units(models)])
