"""The seam between the search engine and a search strategy: ask for configs, tell their scores.

A strategy (a genetic algorithm, NSGA-II, random search, a Bayesian optimiser) only decides
which configs to try next.  Everything else is the engine's, the same for every strategy
(:mod:`.engine`): the references, the budget and its feasibility rule, the cache of predicted
and scored configs, retries, the limits (``timeout_s``, ``max_evaluations``, ``patience``),
checkpoints and the progress bar.  One round of a search is::

    configs = strategy.ask()        # [] once the strategy is done
    ... the engine predicts, scores (within the limits) and caches them ...
    strategy.tell(trials)           # one Trial per asked config, in order

A strategy proposes with cheap latency predictions in hand (:class:`Problem`), so it never
needs a proxy call to learn that a config is over the budget.  Its ``state_dict()`` is JSON
and, loaded into a strategy built with the same options and started on the same problem,
continues to exactly the proposals an unbroken run makes; with the same ``seed`` a run is
reproducible.  A new strategy is one class with these members; pass an instance as
``SearchSession(model, strategy=MyStrategy())``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from ..checks import integer
from ..config import SearchSpace, SparsityConfig

# What a strategy optimises, and so which configs the engine scores:
# "budget": the best score within the latency budget; a config over it is never given to the proxy.
# "pareto": the front of (score ↑, latency ↓); every config is scored and the budget only picks the best.
Objective = Literal["budget", "pareto"]

# every strategy's rounds after its first (a far bound refuses a corrupted file's number)
Generations = integer(ge=0, le=100_000, note="rounds after the first")
NOVELTY_TRIES = 50  # rounds of drawing a new (in-budget) candidate; bounded, then a repeat is accepted
T = TypeVar("T")


@dataclass(frozen=True)
class Trial:
    """What the engine knows of a config: its predicted latency (in the budget's scope), whether
    that is within the budget, and its score (None: not scored, because it is over the budget of
    a ``"budget"`` objective, its evaluation failed, or a limit left it untried)."""

    config: SparsityConfig
    ms: float
    feasible: bool
    score: float | None


class Problem(Protocol):
    """What a strategy may consult while it proposes: the space, the budget and the latency
    predictions (cheap, cached; every config predicted is a row of the search's history)."""

    space: SearchSpace
    budget_ms: float
    predicted: Mapping[SparsityConfig, float]  # every config predicted so far → ms

    def predict(self, configs: Iterable[SparsityConfig]) -> None:
        """Predict the configs not yet in :attr:`predicted`, in one batch."""

    def feasible(self, config: SparsityConfig) -> bool:
        """Whether a predicted config is within the budget."""

    def trial(self, config: SparsityConfig) -> Trial:
        """What the search knows of a predicted config (a strategy rebuilds its state from it on load)."""


class SearchStrategy(Protocol):
    """Proposes configs, is told their scores; see the module docstring.

    ``name`` identifies it in results, checkpoints and summaries; ``options()`` are the keyword
    arguments it was built with (JSON values: a checkpoint records them, and a resume rebuilds
    a built-in strategy from its name and them); ``rounds`` is how many ask/tell rounds it runs
    when no limit ends the search first.
    """

    name: str
    objective: Objective
    rounds: int

    def options(self) -> dict[str, Any]: ...

    def start(self, problem: Problem, seed: int | None) -> None:
        """Begin a search of ``problem``, drawing from ``seed`` (reproducible); before :meth:`ask`
        or :meth:`load_state_dict`."""

    def ask(self) -> list[SparsityConfig]:
        """The configs of the next round (each predicted through the problem); [] when done."""

    def tell(self, trials: list[Trial]) -> None:
        """The outcome of the last :meth:`ask`, one trial per config, in its order."""

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` needs to go on after the last :meth:`tell` (JSON)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (after :meth:`start` on the restored problem)."""


def draw_new(problem: Problem, make: Callable[[int], T], n: int, config: Callable[[T], SparsityConfig], *,
             within_budget: bool) -> list[T]:
    """``n`` candidates, ``make(slot)`` each, whose configs (``config(candidate)``) are new and,
    ``within_budget``, within the budget.

    Every candidate should be new and meet the constraint, as in the SparseViT reference search;
    latency is cheap, so rejected draws are redrawn in a few batched rounds, and after
    ``NOVELTY_TRIES`` rounds a slot keeps its last draw whatever it is.
    """
    known = set(problem.predicted)
    drawn: dict[int, T] = {}
    todo = list(range(n))
    for _ in range(NOVELTY_TRIES):
        draws = {i: make(i) for i in todo}
        configs = {i: config(candidate) for i, candidate in draws.items()}
        problem.predict(configs.values())
        drawn.update(draws)
        todo = []
        for i, cfg in configs.items():
            if cfg in known or (within_budget and not problem.feasible(cfg)):
                todo.append(i)
            else:
                known.add(cfg)
        if not todo:
            break
    return [drawn[i] for i in range(n)]
