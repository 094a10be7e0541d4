"""DEAP evolution over a search space's integer genome (one grid index per knob).

The engine knows nothing about models or devices: it takes a batch latency function
``latency_fn(configs) -> ms`` (cheap, vectorised) and a proxy ``proxy(cfg) -> float``
(expensive, higher is better).  Proxy calls go through ``toolbox.map`` only, so an
executor with a ``map(fn, iterable)`` method can spread them over processes or machines.

- ``mode="single"``: maximise the proxy subject to ``latency ≤ budget``.  Fitness is
  ``(-violation, score)`` compared lexicographically (feasibility first, Deb's rule), so an
  infeasible candidate is ranked, never resampled in a loop, and never scored by the proxy.
- ``mode="nsga2"``: NSGA-II over ``(score ↑, latency ↓)``; every candidate is scored, and
  the budget only picks ``best`` from the front.

Failed evaluations are retried, then recorded and left out of selection (see
:mod:`.evaluation`).  With a ``checkpoint`` callback the engine hands over its
:class:`SearchState` after every finished generation, and ``run(state)`` continues from one
to exactly the result of an unbroken run.

Limits end a search early, with a sentence saying which (``EvolutionOutcome.stopped``):
``timeout_s`` (wall time of this run), ``max_evaluations`` (proxy evaluations over the whole
search) and ``patience`` (generations without a better best score).  A generation cut short
is not checkpointed (a resumed search runs it again).  Without a time limit that fires, a
seed reproduces the search exactly.

Both modes follow the SparseViT reference search: the top ``parents`` of the population
breed the next generation, half of the children by mutation, half by crossover (see
:mod:`.genome`); then repair restores the within-stage order.  Parents survive (elitism).
The first population holds the uniform configs (``space.uniform(g)``) next to random ones,
so a search never ends worse than the best uniform config it could afford.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from deap import tools
from tqdm.auto import tqdm

from .._progress import progress_bar
from ..config import SearchSpace, SparsityConfig
from .checkpoint import SearchState
from .evaluation import Ledger
from .genome import IsolatedRandom, make_toolbox
from .outcome import PROGRESS_COLUMNS, EvolutionOutcome
from .protocols import Executor, LatencyFn, Proxy, check_executor
from .settings import FIELDS, SearchSettings, resolve_budget, settings_from, space_settings

logger = logging.getLogger(__name__)

NOVELTY_TRIES = 50  # rounds of drawing a new (in-budget) candidate; bounded, then a repeat is accepted


class EvolutionSearch:
    """Evolutionary search of per-knob sparsity under a latency budget (see module docstring).

    The search settings are a :class:`SearchSettings`, given as ``settings`` or as its fields'
    keywords (``latency_budget=0.7, population=100, ...``; ``timeout_s`` defaults to None here,
    no time limit, unlike in :class:`SearchSession`), and read back as ``engine.settings`` or
    one by one (``engine.population``).  Proxy calls go through ``executor.map`` if given;
    ``checkpoint(state)`` is called after every finished generation.
    """

    def __init__(
        self,
        space: SearchSpace,
        latency_fn: LatencyFn,
        proxy: Proxy,
        *,
        executor: Executor | None = None,
        checkpoint: Callable[[SearchState], None] | None = None,
        progress: bool = False,
        settings: SearchSettings | None = None,
        **options: Any,
    ) -> None:
        self.settings = settings_from(settings, options, caller="EvolutionSearch", timeout_s=None)
        check_executor(executor)
        self.space, self.latency_fn, self.proxy = space, latency_fn, proxy
        self.executor, self.checkpoint, self.progress = executor, checkpoint, progress

    def __getattr__(self, name: str) -> Any:
        """``engine.mode``, ``engine.timeout_s``, ...: the fields of :attr:`settings`."""
        if name in FIELDS:
            return getattr(self.__dict__["settings"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def shape(self) -> dict[str, Any]:
        """What shapes the search (not how it is run): a resumed search must be given the same."""
        return {**self.settings.shape(), **space_settings(self.space)}

    # ------------------------------------------------------------ genomes
    def _config(self, genome: Sequence[int]) -> SparsityConfig:
        return self.space.decode(genome)

    def _repair(self, ind: list[int]) -> list[int]:
        ind[:] = self.space.encode(self._config(ind))
        return ind

    def _evaluate(self, individuals: list, generation: int) -> tuple[list, int]:
        """Give every individual with an invalid fitness one; returns those that have one
        (a failed evaluation takes no part in selection) and the configs scored."""
        ledger, single = self._ledger, self.settings.mode == "single"
        invalid = [ind for ind in individuals if not ind.fitness.valid]
        configs = [self._config(ind) for ind in invalid]
        ledger.predict(configs, generation)
        calls = ledger.score([c for c in configs if not single or ledger.feasible(c)])
        for ind, cfg in zip(invalid, configs):
            if cfg not in ledger.scores and (not single or ledger.feasible(cfg)):
                continue  # failed, or left untried by a limit
            ms = ledger.ms[cfg]
            if not single:
                ind.fitness.values = (ledger.scores[cfg], ms)
            else:
                violation = max(0.0, ms / ledger.budget_ms - 1.0)
                ind.fitness.values = (-violation, ledger.scores.get(cfg, -math.inf))
        return [ind for ind in individuals if ind.fitness.valid], calls

    # --------------------------------------------------------------- variation
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

    def _breed(self, parents: list, n: int, generation: int) -> list:
        """``n`` children, the first ``mutation_share`` by mutation, the rest by crossover."""
        n_mutants = round(n * self.settings.mutation_share)
        return self._draw(lambda slot: self._child(parents, slot < n_mutants), n, generation)

    def _draw(self, make: Callable[[int], list[int]], n: int, generation: int) -> list:
        """``n`` individuals, ``make(slot)`` each, that are new and (single mode) within budget.

        As in the reference search, every candidate should be new and meet the constraint;
        latency is cheap, so rejected draws are redrawn in a few vectorised rounds, and after
        ``NOVELTY_TRIES`` rounds a slot keeps its last draw whatever it is.
        """
        ledger = self._ledger
        known = set(ledger.ms)
        drawn: dict[int, list[int]] = {}
        todo = list(range(n))
        for _ in range(NOVELTY_TRIES):
            with self._rng.active():
                draws = {i: make(i) for i in todo}
            configs = {i: self._config(ind) for i, ind in draws.items()}
            ledger.predict(configs.values(), generation)
            drawn.update(draws)
            todo = []
            for i, cfg in configs.items():
                if cfg in known or (self.settings.mode == "single" and not ledger.feasible(cfg)):
                    todo.append(i)
                else:
                    known.add(cfg)
            if not todo:
                break
        return [drawn[i] for i in range(n)]

    def _initial(self, generation: int) -> list:
        """Uniform configs (feasible ones only in single mode), spread over the grid, then
        random ones drawn like children: new and, in single mode, within budget."""
        uniform = [self.space.uniform(g) for g in self.space.grid]
        if self.settings.mode == "single":
            uniform = [c for c in uniform if self._ledger.feasible(c)]
        room = max(1, self.settings.population // 2)
        if len(uniform) > room:
            uniform = [uniform[int(round(i))] for i in np.linspace(0, len(uniform) - 1, room)]
        pop = [self._tb.genome(self.space.encode(c)) for c in uniform]
        return pop + self._draw(lambda slot: self._repair(self._tb.individual()), self.settings.population - len(pop),
                                generation)

    # ---------------------------------------------------------------------- run
    def _check_budget(self) -> SparsityConfig:
        """Resolve the budget against the dense latency; refuse one nothing can meet.
        Returns the fastest uniform config."""
        ledger, s = self._ledger, self.settings
        uniform = [self.space.uniform(g) for g in self.space.grid]
        ledger.predict(uniform, 0)
        self._dense_ms = ledger.ms[self.space.dense()]
        ledger.budget_ms = budget_ms = resolve_budget(s.latency_budget, s.budget_ms, self._dense_ms)
        fastest = min(uniform, key=ledger.ms.__getitem__)
        fastest_ms = ledger.ms[fastest]
        if budget_ms < fastest_ms:
            hint = ("; skipping windows barely speeds this model up here, where fixed costs dominate (try a larger "
                    "input)" if fastest_ms > 0.95 * self._dense_ms else "")
            raise ValueError(
                f"latency budget {budget_ms:.4g} ms cannot be met: the fastest reachable predicted latency is "
                f"{fastest_ms:.4g} ms ({fastest}, {fastest_ms / self._dense_ms:.0%} of the dense {self._dense_ms:.4g} "
                f"ms); raise the budget to at least latency_budget={math.ceil(fastest_ms / self._dense_ms * 100) / 100}"
                f" or budget_ms={fastest_ms:.4g}, or add higher sparsities to the search space's grid{hint}")
        return fastest

    def _reset(self) -> None:
        s = self.settings
        self._tb = make_toolbox(self.space, s, self.proxy, self.executor)
        self._ledger = Ledger(self.latency_fn, self._tb, retries=s.retries, max_evaluations=s.max_evaluations,
                              out_of_time=self._out_of_time)
        self._rng = IsolatedRandom(s.seed)
        self._logbook = tools.Logbook()
        self._logbook.header = PROGRESS_COLUMNS
        self._deadline = None if s.timeout_s is None else time.monotonic() + s.timeout_s

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _references(self) -> None:
        """Score dense (the reference every score is read against) and the fastest uniform
        config (feasible, so a best always exists); without them there is no search."""
        refs = [self.space.dense(), self._check_budget()]
        self._ledger.score(refs, bounded=False)
        lost = {str(c): self._ledger.failed[c] for c in refs if c in self._ledger.failed}
        if lost:
            raise RuntimeError(f"the proxy failed on the reference config(s) {lost} after {self.settings.retries + 1} "
                               "attempts; fix the proxy (or the executor) and run again")

    def _next(self, pop: list | None, generation: int) -> tuple[list, int]:
        """The population of ``generation`` (the first when ``pop`` is None) and the configs scored for it."""
        s = self.settings
        if pop is None:
            pop, calls = self._evaluate(self._initial(generation), generation)
            if len(pop) < 2 and self._ledger.cut is None:
                raise RuntimeError(f"only {len(pop)} candidate(s) of the first population could be scored; see the "
                                   "warnings for the proxy's errors")
            if s.mode == "nsga2" and pop:
                pop = self._tb.select(pop, len(pop))  # deterministic: assigns ranks and crowding distances
            return pop, calls
        with self._rng.active():
            parents = self._tb.select(pop, s.parents)
        children, calls = self._evaluate(self._breed(parents, s.population - s.parents, generation), generation)
        with self._rng.active():
            pop = parents + children if s.mode == "single" else self._tb.select(pop + children, s.population)
        return pop, calls

    def run(self, state: SearchState | None = None) -> EvolutionOutcome:
        """Evolve, from a checkpoint's ``state`` if given; every distinct config is predicted
        once and scored (or given up on) at most once."""
        self._reset()
        if state is None:
            self._references()
            pop, first = None, 0
        else:
            pop, first = self._restore(state), state.generation + 1
        stop, ledger, generations = None, self._ledger, self.settings.generations
        with progress_bar(total=generations + 1, initial=first, desc=f"search ({self.settings.mode})", unit="gen",
                          enabled=self.progress) as bar:
            for generation in range(first, generations + 1):
                stop = self._limit_reached()
                if stop is not None:
                    break
                known = len(ledger.ms)
                pop, calls = self._next(pop, generation)
                self._record(generation, pop, calls, known, bar)
                stop = ledger.cut
                if stop is not None:
                    break  # not checkpointed: a resumed search runs this generation again, in full
                if self.checkpoint is not None:
                    self.checkpoint(self._state(generation, pop))

        stopped = None if stop is None else self._stop_message(stop)
        if stopped is not None:
            logger.log(logging.INFO if stop == "patience" else logging.WARNING, "search %s", stopped)
        best, best_score = ledger.best()
        logger.info("search done: %d configs predicted, %d scored, %d failed; best %s at %.4g ms, score %.4g",
                    len(ledger.ms), len(ledger.scores), len(ledger.failed), best, ledger.ms[best], best_score)
        return EvolutionOutcome(
            best=best, best_ms=ledger.ms[best], best_score=best_score, dense_ms=self._dense_ms,
            dense_score=ledger.scores[self.space.dense()], budget_ms=ledger.budget_ms, history=ledger.history(),
            progress=pd.DataFrame(list(self._logbook), columns=list(PROGRESS_COLUMNS)), stopped=stopped,
        )

    def _limit_reached(self) -> str | None:
        """The limit that ends the search before its next generation, if any."""
        s = self.settings
        if self._out_of_time():
            return "time"
        if s.max_evaluations is not None and self._ledger.evaluated() >= s.max_evaluations:
            return "evaluations"
        best = [row["best_score"] for row in self._logbook]
        if s.patience is not None and len(best) > s.patience and best[-1] <= best[-1 - s.patience]:
            return "patience"
        return None

    def _stop_message(self, limit: str) -> str:
        """When and why a limit ended the search, and the setting that would let it go on."""
        unfinished = " (the last one cut short)" if limit == self._ledger.cut else ""
        return (f"stopped early after {len(self._logbook)} of {self.settings.generations + 1} generations"
                f"{unfinished}: {self.settings.limit_message(limit)}")

    # ------------------------------------------------------------- checkpoints
    def _state(self, generation: int, pop: list) -> SearchState:
        return SearchState(
            generation=generation, settings=self.shape(), rng_state=self._rng.to_json(),
            population=[list(ind) for ind in pop], **self._ledger.entries(),
            logbook=[dict(row) for row in self._logbook], dense_ms=self._dense_ms, budget_ms=self._ledger.budget_ms,
        )

    def _restore(self, state: SearchState) -> list:
        """Ledger, random state and Logbook from ``state``; returns its population with fitness
        rebuilt from the ledger (no prediction or proxy call)."""
        ours = self.shape()
        if state.settings != ours:
            differ = sorted(k for k in {*ours, *state.settings} if ours.get(k) != state.settings.get(k))
            raise ValueError(f"the checkpoint was made by a search with other settings ({', '.join(differ)}); "
                             "resume it with the settings it was made with (SearchSession.resume does)")
        self._ledger.restore(self.space.config, state.predicted, state.scores, state.failed)
        self._rng = IsolatedRandom.from_json(state.rng_state)
        for row in state.logbook:
            self._logbook.record(**row)
        self._dense_ms, self._ledger.budget_ms = state.dense_ms, state.budget_ms
        pop, _ = self._evaluate([self._tb.genome(g) for g in state.population], state.generation)
        return pop

    def _record(self, generation: int, pop: list, calls: int, known: int, bar: tqdm) -> None:
        """One Logbook row (and progress-bar update) per generation."""
        ledger = self._ledger
        best, best_score = ledger.best()
        feasible = float(np.mean([ledger.feasible(self._config(ind)) for ind in pop])) if pop else math.nan
        self._logbook.record(generation=generation, new_configs=len(ledger.ms) - known, evaluations=calls,
                             feasible_fraction=feasible, best_score=best_score, best_ms=ledger.ms[best])
        bar.set_postfix(best=f"{best_score:.4g}", ms=f"{ledger.ms[best]:.4g}", scored=len(ledger.scores),
                        refresh=False)
        bar.update()
        logger.debug("generation %d: %d new configs, %d scored, best %.4g at %.4g ms", generation,
                     len(ledger.ms) - known, calls, best_score, ledger.ms[best])
