"""Random search: the baseline every other strategy should beat at the same number of evaluations.

Each round draws ``samples`` configs uniformly from the grid (repaired to the within-stage
order), every one new and within the budget (screened by the cheap latency prediction, never
by the proxy); the best score within the budget wins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._documents import Field
from ...checks import Count, checked
from ...config import SparsityConfig
from ..strategy import Generations, Objective, Problem, Trial, draw_new


class RandomSearch:
    """``samples`` new random configs within the budget, then ``generations`` more rounds of them (the
    genetic strategies' word and default: "rounds after the first", so one flag means one thing)."""

    name = "random"
    objective: Objective = "budget"

    @checked
    def __init__(self, samples: Count = 50, generations: Generations = 20) -> None:
        self.samples, self.generations = samples, generations

    @property
    def rounds(self) -> int:
        return self.generations + 1

    def options(self) -> dict[str, Any]:
        return {"samples": self.samples, "generations": self.generations}

    def __repr__(self) -> str:
        return f"RandomSearch(samples={self.samples}, generations={self.generations})"

    def start(self, problem: Problem, seed: int | None) -> None:
        self._problem = problem
        self._rng = np.random.default_rng(seed)

    def ask(self) -> list[SparsityConfig]:
        space = self._problem.space
        return draw_new(self._problem, lambda slot: space.sample(self._rng), self.samples, lambda cfg: cfg,
                        within_budget=True)

    def tell(self, trials: list[Trial]) -> None:
        """Nothing to learn: the engine keeps the best."""

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rng = Field(state, source=f"the {self.name} strategy's state", what="search checkpoint",
                    fix="restore the file, or start the search again")["rng"]
        try:
            self._rng.bit_generator.state = rng.mapping()
        except (TypeError, ValueError, KeyError) as err:
            raise rng.error(f"is not the state of numpy's {type(self._rng.bit_generator).__name__} ({err})") from err
