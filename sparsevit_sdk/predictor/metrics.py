"""Accuracy of latency predictions, judged the way a latency-constrained search uses them:
is a prediction within ±10% / ±5% (feasibility near the budget), how large is the average
relative error (MAPE), and does it rank configs correctly (Spearman ρ)."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr


def relative_error(predicted: np.ndarray, measured: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(predicted, float) / np.asarray(measured, float) - 1.0)


def accuracy(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """``within_10`` and ``within_5`` (% of configs), ``mape`` (%), ``spearman`` and ``n``.

    NaN predictions (a baseline that cannot answer a config) are dropped and counted in
    ``coverage`` (% answered); every other figure is over the answered configs.
    """
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    ok = np.isfinite(predicted)
    out = {"n": int(ok.sum()), "coverage": 100.0 * ok.mean() if len(ok) else 0.0}
    if ok.sum() == 0:
        return {**out, "within_10": np.nan, "within_5": np.nan, "mape": np.nan, "spearman": np.nan}
    err = relative_error(predicted[ok], measured[ok])
    ranked = ok.sum() > 2 and np.ptp(predicted[ok]) > 0 and np.ptp(measured[ok]) > 0
    rho = spearmanr(predicted[ok], measured[ok]).statistic if ranked else np.nan  # undefined for constants
    return {**out, "within_10": 100.0 * float(np.mean(err <= 0.10)), "within_5": 100.0 * float(np.mean(err <= 0.05)),
            "mape": 100.0 * float(err.mean()), "spearman": float(rho)}


def agreement(first: np.ndarray, second: np.ndarray, tol: float = 0.10) -> float:
    """% of configs whose two measurements are within ``tol`` of each other (either way):
    the ceiling on ``within_10`` that measurement noise leaves any predictor."""
    err = np.maximum(relative_error(first, second), relative_error(second, first))
    return 100.0 * float(np.mean(err <= tol))


def format_report(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table, one row per method."""
    head = "| method | configs | answered % | ±10 % | ±5 % | MAPE % | Spearman ρ |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['n']} | {m['coverage']:.0f} | {m['within_10']:.1f} | {m['within_5']:.1f} "
                     f"| {m['mape']:.2f} | {m['spearman']:.3f} |")
    return "\n".join(lines)
