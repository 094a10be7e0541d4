"""The genetic strategies, on DEAP: a GA for the best score within the budget, and NSGA-II.

A genome is one grid index per knob of a :class:`~sparsevit_sdk.config.SearchSpace`.  Both
follow the SparseViT reference search: the first population holds the uniform configs
(``space.uniform(g)``) next to random ones, so a search never ends worse than the best uniform
config it could afford; then every round the top ``parents`` breed ``population - parents``
children, ``mutation_share`` of them by uniform-int mutation (each gene redrawn with
``mutation_prob``), the rest by uniform crossover of two parents, and repair restores the
within-stage order.  Parents survive (elitism).

- :class:`GeneticSearch` (``"ga"``): fitness ``(-violation, score)`` compared lexicographically
  (feasibility first, Deb's rule), so an infeasible candidate is ranked, never resampled in a
  loop, and never scored; selection ``selBest``.
- :class:`NSGA2Search` (``"nsga2"``): NSGA-II over ``(score ↑, latency ↓)``; every candidate is
  scored, and the budget only picks the best from the front.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from deap import base, creator, tools

from ..._documents import Field
from ...checks import Probability, checked, integer
from ...config import SparsityConfig
from ..strategy import Generations, Objective, Problem, Trial, draw_new

# far beyond any search (the reference is 100 x 20), near enough to refuse a corrupted file's number
# (a population sizes memory)
MAX_POPULATION = 100_000
Population = integer(ge=3, le=MAX_POPULATION)
Parents = integer(ge=2, note="two breed a child")


def _create_types() -> None:
    """DEAP types live in the process-wide ``creator`` module: create each once."""
    if not hasattr(creator, "SparseVitBudgetFitness"):
        creator.create("SparseVitBudgetFitness", base.Fitness, weights=(1.0, 1.0))  # (-violation, score)
    if not hasattr(creator, "SparseVitBudgetGenome"):
        creator.create("SparseVitBudgetGenome", list, fitness=creator.SparseVitBudgetFitness)
    if not hasattr(creator, "SparseVitParetoFitness"):
        creator.create("SparseVitParetoFitness", base.Fitness, weights=(1.0, -1.0))  # (score, ms)
    if not hasattr(creator, "SparseVitParetoGenome"):
        creator.create("SparseVitParetoGenome", list, fitness=creator.SparseVitParetoFitness)


class IsolatedRandom:
    """DEAP's operators draw from the global ``random``.  This swaps the search's own state
    in around them and back out afterwards, so a seed reproduces the search whatever the
    caller (or a proxy running between rounds) does with ``random``, and the caller's
    stream is left exactly where it was."""

    def __init__(self, seed: int | None) -> None:
        self._state = random.Random(seed).getstate()

    def to_json(self) -> list:
        version, internal, gauss = self._state
        return [version, list(internal), gauss]

    @classmethod
    def from_json(cls, state: Field) -> IsolatedRandom:
        """The state of :meth:`to_json`, refused naming the field unless it is a ``random.getstate()``."""
        rng = cls(None)
        try:  # (version, 625 ints, gauss or null)
            version, internal, gauss = state.value
            rng._state = (version, tuple(internal), gauss)
            random.Random().setstate(rng._state)
        except (TypeError, ValueError) as err:
            raise state.error(f"is not a random.getstate() of this Python ({err})") from err
        return rng

    @contextmanager
    def active(self) -> Iterator[None]:
        outer = random.getstate()
        random.setstate(self._state)
        try:
            yield
        finally:
            self._state = random.getstate()
            random.setstate(outer)


class GeneticSearch:
    """The best proxy score within the latency budget by a genetic algorithm (see the module docstring).

    ``population`` candidates per round, of which the best ``parents`` survive and breed the
    rest; ``generations`` rounds after the first population.  Defaults: the SparseViT reference.
    """

    name = "ga"
    objective: Objective = "budget"

    @checked
    def __init__(self, population: Population = 100, parents: Parents = 25, generations: Generations = 20,
                 mutation_prob: Probability = 0.1, mutation_share: Probability = 0.5) -> None:
        if not parents < population:
            raise ValueError(f"need parents < population, got parents={parents}, population={population}")
        self.population, self.parents, self.generations = population, parents, generations
        self.mutation_prob, self.mutation_share = mutation_prob, mutation_share

    @property
    def rounds(self) -> int:
        return self.generations + 1

    def options(self) -> dict[str, Any]:
        return {"population": self.population, "parents": self.parents, "generations": self.generations,
                "mutation_prob": self.mutation_prob, "mutation_share": self.mutation_share}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"

    # ------------------------------------------------------------ the DEAP side
    def _toolbox(self) -> base.Toolbox:
        _create_types()
        genome = creator.SparseVitBudgetGenome if self.objective == "budget" else creator.SparseVitParetoGenome
        top = len(self._problem.space.grid) - 1
        tb = base.Toolbox()
        tb.register("gene", random.randint, 0, top)
        tb.register("individual", tools.initRepeat, genome, tb.gene, n=self._problem.space.num_knobs)
        tb.register("genome", genome)
        tb.register("mutate", tools.mutUniformInt, low=0, up=top, indpb=self.mutation_prob)
        tb.register("mate", tools.cxUniform, indpb=0.5)
        tb.register("select", self._select)
        return tb

    _select: Callable[..., list] = staticmethod(tools.selBest)

    def _fitness(self, trial: Trial) -> tuple[float, float]:
        violation = max(0.0, trial.ms / self._problem.budget_ms - 1.0)
        return -violation, -math.inf if trial.score is None else trial.score

    def _survivors(self, parents: list, children: list) -> list:
        return parents + children

    # --------------------------------------------------------------- the rounds
    def start(self, problem: Problem, seed: int | None) -> None:
        self._problem = problem
        self._tb = self._toolbox()
        self._rng = IsolatedRandom(seed)
        self._pop: list | None = None
        self._parents: list = []
        self._asked: list = []

    def _config(self, genome: list[int]) -> SparsityConfig:
        return self._problem.space.decode(genome)

    def _repair(self, ind: list[int]) -> list[int]:
        ind[:] = self._problem.space.encode(self._config(ind))
        return ind

    def _draw(self, make: Callable[[int], list[int]], n: int) -> list:
        def drawn(slot: int) -> list[int]:
            with self._rng.active():
                return make(slot)
        return draw_new(self._problem, drawn, n, self._config, within_budget=self.objective == "budget")

    def _child(self, parents: list, mutant: bool) -> list[int]:
        """One repaired child: a mutated clone of a parent, or a uniform crossover of two."""
        if mutant:
            child = self._tb.clone(random.choice(parents))
            self._tb.mutate(child)
        else:
            child, other = (self._tb.clone(p) for p in random.sample(parents, 2))
            self._tb.mate(child, other)
        del child.fitness.values
        return self._repair(child)

    def _initial(self) -> list:
        """Uniform configs (feasible ones only for the budget objective), spread over the grid,
        then random ones drawn like children: new and, for the budget objective, within it."""
        space = self._problem.space
        uniform = [space.uniform(g) for g in space.grid]
        if self.objective == "budget":
            uniform = [c for c in uniform if self._problem.feasible(c)]
        room = max(1, self.population // 2)
        if len(uniform) > room:
            uniform = [uniform[int(round(i))] for i in np.linspace(0, len(uniform) - 1, room)]
        pop = [self._tb.genome(space.encode(c)) for c in uniform]
        return pop + self._draw(lambda slot: self._repair(self._tb.individual()), self.population - len(pop))

    def ask(self) -> list[SparsityConfig]:
        if self._pop is None:
            self._asked = self._initial()
        else:
            with self._rng.active():
                self._parents = self._tb.select(self._pop, self.parents)
            n_mutants = round((self.population - self.parents) * self.mutation_share)
            self._asked = self._draw(lambda slot: self._child(self._parents, slot < n_mutants),
                                     self.population - self.parents)
        return [self._config(ind) for ind in self._asked]

    def _fitted(self, individuals: list, trials: list[Trial]) -> list:
        """The individuals given a fitness by their trials; one without a score it needs (failed,
        or left untried by a limit) takes no part in selection."""
        kept = []
        for ind, trial in zip(individuals, trials):
            if trial.score is None and (self.objective == "pareto" or trial.feasible):
                continue
            ind.fitness.values = self._fitness(trial)
            kept.append(ind)
        return kept

    def tell(self, trials: list[Trial]) -> None:
        scored = self._fitted(self._asked, trials)
        if self._pop is None:
            if len(scored) < 2:
                raise RuntimeError(f"only {len(scored)} candidate(s) of the first population could be scored; see "
                                   "the warnings for the proxy's errors")
            self._pop = self._first(scored)
        else:
            with self._rng.active():
                self._pop = self._survivors(self._parents, scored)

    def _first(self, pop: list) -> list:
        return pop

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.to_json(), "population": [list(ind) for ind in self._pop or []]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Random state and population; fitness is rebuilt from the search's cache (no proxy call)."""
        doc = Field(state, source=f"the {self.name} strategy's state", what="search checkpoint",
                    fix="restore the file, or start the search again")
        space = self._problem.space
        genomes = [[g.number(integer=True, minimum=0, maximum=len(space.grid) - 1)
                    for g in genome.elements(length=space.num_knobs)]
                   for genome in doc["population"].elements(nonempty=True)]
        self._rng = IsolatedRandom.from_json(doc["rng"])
        individuals = [self._tb.genome(g) for g in genomes]
        self._pop = self._fitted(individuals, [self._problem.trial(self._config(g)) for g in genomes])


class NSGA2Search(GeneticSearch):
    """The Pareto front of (proxy score ↑, predicted latency ↓) by NSGA-II (see the module
    docstring); same knobs as :class:`GeneticSearch`."""

    name = "nsga2"
    objective: Objective = "pareto"
    _select = staticmethod(tools.selNSGA2)

    def _fitness(self, trial: Trial) -> tuple[float, float]:
        return trial.score, trial.ms

    def _first(self, pop: list) -> list:
        return self._tb.select(pop, len(pop))  # deterministic: assigns ranks and crowding distances

    def _survivors(self, parents: list, children: list) -> list:
        return self._tb.select(self._pop + children, self.population)
