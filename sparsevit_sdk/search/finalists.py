"""When the search's target is this machine, its winner is measured before it is chosen.

A predictor is not equally wrong about every config, and a search under a budget favours the configs
whose latency it underestimates most: they look fastest for their score.  So where the predictor was
calibrated here, the Pareto front near the budget (predicted within it plus its expected error) is timed
on the real kernels, as ``validate()`` times them, beside the dense model; the best-scored one measured
within the budget wins.  The result keeps both the predicted and the measured figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch

from ..config import SparsityConfig
from ..dataset.schema import stable_statistic
from ..profiler.forward import ModelForward
from .outcome import pareto_front
from .validation import time_rounds, timing_settings

FINALISTS = 5  # configs timed before the winner is chosen
WARMUP, REPEATS, ROUNDS = 2, 5, 2  # per finalist: as validate() times, fewer repeats


@dataclass(frozen=True)
class Finalist:
    """A config timed before the winner was chosen: its proxy score and its predicted and measured ms."""

    ratios: tuple[float, ...]
    score: float
    predicted_ms: float
    measured_ms: float


@dataclass(frozen=True)
class Measured:
    """What the finalists measured: the dense model, the budget on the measured scale (a fraction of the
    measured dense model, or the absolute budget), each finalist, and how they were timed."""

    dense_ms: float
    budget_ms: float
    finalists: tuple[Finalist, ...]
    threads: int
    clock: str
    statistic: str

    def chosen(self) -> Finalist:
        """The best-scored finalist measured within the budget; without one, the fastest measured."""
        within = [f for f in self.finalists if f.measured_ms <= self.budget_ms]
        if within:
            return max(within, key=lambda f: (f.score, -f.measured_ms))
        return min(self.finalists, key=lambda f: f.measured_ms)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "finalists": [{**asdict(f), "ratios": list(f.ratios)} for f in self.finalists]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measured:
        finalists = tuple(Finalist(**{**f, "ratios": tuple(f["ratios"])}) for f in data["finalists"])
        return cls(**{**data, "finalists": finalists})


def finalists(history: pd.DataFrame, budget_ms: float, band: float, k: int = FINALISTS) -> pd.DataFrame:
    """The ``k`` best-scored configs of the Pareto front of ``history`` predicted within ``budget_ms`` plus
    ``band`` (the predictor's expected error, a fraction): a config predicted just over the budget may measure
    under it, and each next one down the front is faster, so some finalist is likely to measure within it."""
    front = pareto_front(history)
    near = front[front["predicted_ms"] <= budget_ms * (1 + band)]
    return near.sort_values(["score", "predicted_ms"], ascending=[False, True], kind="stable").head(k)


def measure_finalists(forward: ModelForward, history: pd.DataFrame, dense: SparsityConfig, *, budget_ms: float,
                      dense_predicted_ms: float, relative: bool, band: float, input_shape: tuple[int, ...],
                      predictor_info: dict[str, Any], runtime: str) -> Measured:
    """Time :func:`finalists` and the dense model ``dense`` on this CPU as the predictor's data was measured
    (threads, clock, runtime).  With ``relative`` (the budget was a fraction of the dense model), the measured
    budget is that fraction of the measured dense model."""
    chosen = finalists(history, budget_ms, band)
    configs = [SparsityConfig(tuple(r), dense.signature, dense.granularity) for r in chosen["ratios"]]
    dev = torch.device("cpu")
    threads, clock = timing_settings(predictor_info, dev, runtime, None, None)
    rounds = time_rounds(forward, [dense, *configs], input_shape, dev, runtime=runtime, threads=threads, clock=clock,
                         warmup=WARMUP, repeats=REPEATS, rounds=ROUNDS)
    ms = {cfg: min(values) for (_, cfg), values in rounds.items()}
    dense_ms = ms[dense]
    return Measured(
        dense_ms=dense_ms, budget_ms=budget_ms * dense_ms / dense_predicted_ms if relative else budget_ms,
        finalists=tuple(Finalist(tuple(float(r) for r in cfg.ratios), float(score), float(predicted), ms[cfg])
                        for cfg, score, predicted in zip(configs, chosen["score"], chosen["predicted_ms"])),
        threads=threads, clock=clock, statistic=stable_statistic(dev))


def band_of(expected_error: dict[str, Any] | None) -> float:
    """How far over the budget a finalist may be predicted: the predictor's expected error (MAPE, as a
    fraction), at least 5 %."""
    return max(0.05, (expected_error or {}).get("mape", 10.0) / 100)

