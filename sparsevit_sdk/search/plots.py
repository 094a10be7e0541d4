"""Plots of a search: the Pareto front of (predicted latency, proxy score) and the progress."""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .._atomic import write_figure
from ..config import SparsityConfig
from ..profiler.forward import RestOfModel
from .finalists import Measured


class Plotted(Protocol):
    """What a plot reads of a search's result (:class:`~.result.SearchResult` has it)."""

    best: SparsityConfig
    predicted_ms: float
    score: float
    budget_ms: float
    hw: str
    estimated: bool
    proxy_name: str
    strategy: str
    history: pd.DataFrame
    progress: pd.DataFrame
    rest: RestOfModel
    call: str

    @property
    def pareto(self) -> pd.DataFrame: ...

    @property
    def expected_error(self) -> dict | None: ...

    @property
    def measured(self) -> Measured | None: ...


def plot_result(result: Plotted, path: str | os.PathLike | None = None) -> Figure:
    """Pareto front of (predicted latency, proxy score) beside the best score per generation.

    Uses a bare ``Figure`` (Agg), so it works headless and leaves pyplot's state alone.
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    front_ax, progress_ax = fig.subplots(1, 2)
    scored = result.history.dropna(subset=["score"])
    uniform = scored[scored["ratios"].map(lambda r: len(set(r)) == 1)]
    unit = "ms, estimated" if result.estimated else "ms"
    front_ax.scatter(scored["predicted_ms"], scored["score"], s=9, alpha=0.35,
                     c=np.where(scored["feasible"], "tab:blue", "tab:gray"), label="evaluated")
    front_ax.plot(uniform["predicted_ms"], uniform["score"], "x", color="tab:green", label="uniform sparsity")
    front = result.pareto
    front_ax.step(front["predicted_ms"], front["score"], where="post", color="tab:orange", label="Pareto front")
    error = result.expected_error
    if error:  # the predictor's error on held-out whole models: how far each point may lie from the truth
        front_ax.errorbar(front["predicted_ms"], front["score"], xerr=front["predicted_ms"] * error["mape"] / 100,
                          fmt="none", ecolor="tab:orange", alpha=0.5, label=f"± {error['mape']:.1f} % (held-out error)")
    front_ax.axvline(result.budget_ms, ls="--", color="black", lw=1, label=f"budget {result.budget_ms:.3g} ms")
    if result.measured is not None:  # finalists timed before choosing: predicted -> measured
        m = result.measured
        for f in m.finalists:
            front_ax.plot([f.predicted_ms, f.measured_ms], [f.score, f.score], color="tab:purple", lw=0.8)
        front_ax.plot([f.measured_ms for f in m.finalists], [f.score for f in m.finalists], "D", mfc="none",
                      color="tab:purple", label="finalists, measured here")
        front_ax.axvline(m.budget_ms, ls=":", color="tab:purple", lw=1, label=f"budget measured {m.budget_ms:.3g} ms")
    front_ax.plot([result.predicted_ms], [result.score], "*", ms=16, color="tab:red", label=f"best {result.best}")
    whole = result.rest.source != "none"
    front_ax.set(xlabel=f"predicted {result.call} end to end on {result.hw} ({unit})" if whole else
                 f"predicted latency on {result.hw} ({unit})", ylabel=result.proxy_name,
                 title=f"{result.strategy} search: {len(scored)} configs scored")
    if whole:  # the backbone's share of the same latencies, on the top axis
        top = front_ax.secondary_xaxis("top", functions=(result.rest.backbone, result.rest.end_to_end))
        top.set_xlabel(f"of which the backbone ({result.rest.ms:.3g} ms of rest, {result.rest.source})")
    front_ax.legend(fontsize=8, loc="lower right")
    progress_ax.plot(result.progress["generation"], result.progress["best_score"], marker="o", ms=3)
    progress_ax.set(xlabel="generation", ylabel="best score within budget", title="search progress")
    progress_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if path is not None:
        write_figure(path, fig, dpi=120)
    return fig
