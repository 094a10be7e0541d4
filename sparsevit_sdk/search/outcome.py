"""What a search run hands back: its history (one row per distinct config), its progress (one
row per generation, i.e. round of the strategy) and the Pareto front of what it scored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import SparsityConfig

HISTORY_COLUMNS = ("generation", "config", "ratios", "predicted_ms", "score", "feasible", "error")
PROGRESS_COLUMNS = ("generation", "new_configs", "evaluations", "feasible_fraction", "best_score", "best_ms")


def pareto_front(history: pd.DataFrame) -> pd.DataFrame:
    """Scored rows that no other row beats on both score (higher) and predicted_ms (lower),
    fastest first."""
    scored = history.dropna(subset=["score"]).sort_values(["predicted_ms", "score"], ascending=[True, False],
                                                          kind="stable")
    best = -np.inf
    keep = []
    for score in scored["score"]:
        keep.append(score > best)
        best = max(best, score)
    return scored[np.asarray(keep, dtype=bool)].reset_index(drop=True)


@dataclass
class SearchOutcome:
    """What one run found; ``history`` has one row per distinct config evaluated."""

    best: SparsityConfig
    best_ms: float
    best_score: float
    dense_ms: float
    dense_score: float
    budget_ms: float
    history: pd.DataFrame
    progress: pd.DataFrame  # one row per generation: configs proposed and scored, share within budget, best so far
    stopped: str | None = None  # why and when a limit ended the search early; None: it ran every generation
    retried: int = 0  # proxy calls made again after a failed attempt (an error, a lost worker or node)
    proxy_warning: str | None = None  # why the proxy cannot rank configs, if its references show it (.ranking)

    @property
    def pareto(self) -> pd.DataFrame:
        return pareto_front(self.history)
