"""DEAP's side of the search: its types, one toolbox per search, and the random state it draws from.

A genome is one grid index per knob of a :class:`~sparsevit_sdk.config.SearchSpace`.
Variation follows the SparseViT reference search: uniform-int mutation (each gene redrawn
with ``mutation_prob``) and uniform crossover of two parents; selection is ``selBest``
(single mode) or ``selNSGA2``.  Proxy calls go through ``toolbox.map`` only: the seam where
an executor spreads them over processes or machines.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

from deap import base, creator, tools

from ..config import SearchSpace
from .evaluation import Guarded
from .protocols import Executor, Proxy
from .settings import SearchSettings


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


def make_toolbox(space: SearchSpace, settings: SearchSettings, proxy: Proxy, executor: Executor | None
                 ) -> base.Toolbox:
    """The toolbox of one search: genomes, variation, selection, and the ``map``/``score`` seam."""
    _create_types()
    genome = creator.SparseVitBudgetGenome if settings.mode == "single" else creator.SparseVitParetoGenome
    top = len(space.grid) - 1
    tb = base.Toolbox()
    tb.register("gene", random.randint, 0, top)
    tb.register("individual", tools.initRepeat, genome, tb.gene, n=space.num_knobs)
    tb.register("genome", genome)
    tb.register("mutate", tools.mutUniformInt, low=0, up=top, indpb=settings.mutation_prob)
    tb.register("mate", tools.cxUniform, indpb=0.5)
    tb.register("select", tools.selBest if settings.mode == "single" else tools.selNSGA2)
    tb.register("map", map if executor is None else executor.map)  # the evaluation seam
    tb.register("score", Guarded(proxy))
    return tb


class IsolatedRandom:
    """DEAP's operators draw from the global ``random``.  This swaps the search's own state
    in around them and back out afterwards, so a seed reproduces the search whatever the
    caller (or a proxy running between generations) does with ``random``, and the caller's
    stream is left exactly where it was."""

    def __init__(self, seed: int | None) -> None:
        self._state = random.Random(seed).getstate()

    def to_json(self) -> list:
        version, internal, gauss = self._state
        return [version, list(internal), gauss]

    @classmethod
    def from_json(cls, state: list) -> IsolatedRandom:
        rng = cls(None)
        rng._state = (state[0], tuple(state[1]), state[2])
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
