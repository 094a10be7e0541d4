"""Predicted vs measured latency of held-out whole models: how right a predictor is, at a glance."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .._atomic import write_figure
from .latency import LatencyPredictor
from .metrics import accuracy


def plot_held_out(predictor: LatencyPredictor, df: pd.DataFrame, path: str | os.PathLike | None = None) -> Figure:
    """Scatter of predicted vs measured ms for every whole model of ``df`` the predictor was
    not fitted on, one colour per model and resolution, with the ±10 % band; log axes, since
    a dataset spans small and large models."""
    held = predictor.held_out(df)
    statistic = predictor.learned_.statistic
    measured, predicted = held[statistic].to_numpy(float), held["predicted_ms"].to_numpy(float)
    score = accuracy(predicted, measured)
    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.subplots()
    for (model, h, w), group in held.groupby(["model", "img_h", "img_w"], sort=True):
        ax.scatter(group[statistic], group["predicted_ms"], s=14, alpha=0.8, label=f"{model} {h}x{w}")
    lo, hi = 0.8 * min(measured.min(), predicted.min()), 1.25 * max(measured.max(), predicted.max())
    line = np.geomspace(lo, hi, 50)
    ax.plot(line, line, color="black", lw=1, label="predicted = measured")
    ax.fill_between(line, 0.9 * line, 1.1 * line, color="gray", alpha=0.2, label="±10 %")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), aspect="equal",
           xlabel=f"measured {statistic.removesuffix('_ms')} (ms)", ylabel="predicted (ms)",
           title=f"{predictor.hw}: {score['n']} held-out models, {score['within_10']:.1f} % within ±10 %, "
                 f"ρ {score['spearman']:.3f}")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left")
    if path is not None:
        write_figure(path, fig, dpi=120)
    return fig
