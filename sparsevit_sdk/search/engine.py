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

Fault tolerance: a proxy call that raises (in any worker), returns anything but a real
finite number, or is lost by the executor (its worker died) is retried up to ``retries``
times in the same generation, then recorded as failed (``history["error"]``) and left out of
selection; the search goes on.  With a ``checkpoint`` callback the engine hands over its
:class:`SearchState` after every finished generation, and ``run(state)`` continues from one
to exactly the result of an unbroken run.

Limits end a search early, with a sentence saying which (``EvolutionOutcome.stopped``):
``timeout_s`` (wall time of this run; checked after every proxy call, so it overshoots by
at most one), ``max_evaluations`` (configs given to the proxy over the whole search,
references included) and ``patience`` (generations without a better best score).  They
decide when to stop, not what is searched, so a resumed search may change them; a
generation cut short is not checkpointed (a resumed search runs it again).  Without a time
limit that fires, a seed reproduces the search exactly.

Both follow the SparseViT reference search: the top ``parents`` of the population breed the
next generation, half of the children by uniform-int mutation (each gene redrawn with
``mutation_prob``), half by uniform crossover of two parents; then repair restores the
within-stage order.  Parents survive (elitism).  The first population holds the uniform
configs (``space.uniform(g)``) next to random ones, so a search never ends worse than the
best uniform config it could afford.
"""

from __future__ import annotations

import logging
import math
import numbers
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from deap import base, creator, tools
from tqdm.auto import tqdm

from ..config import SearchSpace, SparsityConfig
from .checkpoint import SearchState

logger = logging.getLogger(__name__)

Mode = Literal["single", "nsga2"]
LatencyFn = Callable[[list[SparsityConfig]], np.ndarray]
Proxy = Callable[[SparsityConfig], float]

HISTORY_COLUMNS = ("generation", "config", "ratios", "predicted_ms", "score", "feasible", "error")
PROGRESS_COLUMNS = ("generation", "new_configs", "evaluations", "feasible_fraction", "best_score", "best_ms")
NOVELTY_TRIES = 50  # rounds of drawing a new (in-budget) candidate; bounded, then a repeat is accepted


class Executor(Protocol):
    """Anything with ``map`` (the builtin's signature): ``concurrent.futures`` executors, Ray
    pools, ``multiprocessing.Pool``."""

    def map(self, fn: Callable[[Any], Any], iterable: Iterable[Any], /) -> Iterable[Any]: ...


def proxy_name(proxy: Proxy) -> str:
    """What a proxy is called in messages, results and checkpoints."""
    return str(getattr(proxy, "name", None) or getattr(proxy, "__name__", None) or type(proxy).__name__)


@dataclass(frozen=True)
class Failure:
    """An evaluation that did not produce a score: the error, as text (it crosses processes)."""

    error: str

    @classmethod
    def of(cls, err: BaseException) -> Failure:
        return cls(f"{type(err).__name__}: {err}")


class Guarded:
    """``fn`` with its exceptions, and any return value but a real finite number, returned as
    :class:`Failure` values instead of raised or converted.

    This is what goes through ``toolbox.map``: one raising candidate (or one NaN) must not
    take the results of the others in its batch, or the search, down with it.  Nothing is
    converted: ``'0.5'`` or ``True`` from a proxy is a bug in it, not a score.
    """

    def __init__(self, fn: Proxy) -> None:
        self.fn = fn

    def __call__(self, cfg: SparsityConfig) -> float | Failure:
        try:
            value = self.fn(cfg)
        except Exception as err:  # any proxy error is this candidate's failure, reported in history
            return Failure.of(err)
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        return Failure(f"proxy {proxy_name(self.fn)!r} returned {value!r} ({type(value).__name__}); a proxy must "
                       "return a real, finite number (higher is better), e.g. float(score)")


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


class _IsolatedRandom:
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
    def from_json(cls, state: list) -> _IsolatedRandom:
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


def resolve_budget(latency_budget: float | None, budget_ms: float | None, dense_ms: float) -> float:
    """The budget in ms from exactly one of a fraction of dense latency or an absolute value.

    Two explicit arguments instead of one number read by size: 0.8 could be a fraction or a
    real budget in ms on a fast GPU, and a unit mistake would silently search the wrong thing.
    """
    if (latency_budget is None) == (budget_ms is None):
        raise ValueError("give exactly one budget: latency_budget=0.7 (fraction of dense latency) or "
                         "budget_ms=12.5 (milliseconds)")
    if budget_ms is not None:
        if not budget_ms > 0:
            raise ValueError(f"budget_ms must be positive, got {budget_ms}")
        return float(budget_ms)
    if not 0 < latency_budget <= 1:
        hint = f"; for an absolute budget pass budget_ms={latency_budget}" if latency_budget > 1 else ""
        raise ValueError(f"latency_budget is a fraction of the dense model's latency in (0, 1], got "
                         f"{latency_budget}{hint}")
    return float(latency_budget) * dense_ms


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
class EvolutionOutcome:
    """What one run found; ``history`` has one row per distinct config evaluated."""

    best: SparsityConfig
    best_ms: float
    best_score: float
    dense_ms: float
    dense_score: float
    budget_ms: float
    history: pd.DataFrame
    progress: pd.DataFrame  # one row per generation (the DEAP Logbook)
    stopped: str | None = None  # why and when a limit ended the search early; None: it ran every generation

    @property
    def pareto(self) -> pd.DataFrame:
        return pareto_front(self.history)


class EvolutionSearch:
    """Evolutionary search of per-knob sparsity under a latency budget (see module docstring).

    ``population`` candidates per generation, of which the best ``parents`` survive and breed
    ``population - parents`` children; ``generations`` rounds after the first population.
    Budget: ``latency_budget`` as a fraction of the dense config's latency, or ``budget_ms``.
    ``timeout_s``, ``max_evaluations`` and ``patience`` stop it early (None: no limit).
    """

    def __init__(
        self,
        space: SearchSpace,
        latency_fn: LatencyFn,
        proxy: Proxy,
        *,
        latency_budget: float | None = None,
        budget_ms: float | None = None,
        mode: Mode = "single",
        population: int = 100,
        parents: int = 25,
        generations: int = 20,
        mutation_prob: float = 0.1,
        mutation_share: float = 0.5,
        seed: int | None = 0,
        executor: Executor | None = None,
        retries: int = 2,
        checkpoint: Callable[[SearchState], None] | None = None,
        progress: bool = False,
        timeout_s: float | None = None,
        max_evaluations: int | None = None,
        patience: int | None = None,
    ) -> None:
        if mode not in ("single", "nsga2"):
            raise ValueError(f"mode must be 'single' (best score under the budget) or 'nsga2' (Pareto front), "
                             f"got {mode!r}")
        if not 2 <= parents < population:
            raise ValueError(f"need 2 <= parents < population, got parents={parents}, population={population}")
        if generations < 0:
            raise ValueError(f"generations must be >= 0, got {generations}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0 (extra attempts of a failed evaluation), got {retries}")
        for name, p in (("mutation_prob", mutation_prob), ("mutation_share", mutation_share)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {p}")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be a positive number of seconds (or None: no time limit), got "
                             f"{timeout_s}")
        if max_evaluations is not None and max_evaluations < 2:
            raise ValueError(f"max_evaluations must be >= 2, the dense and the fastest uniform config are always "
                             f"scored (or None: no limit), got {max_evaluations}")
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1 generations (or None: never stop for lack of progress), got "
                             f"{patience}")
        if executor is not None and not callable(getattr(executor, "map", None)):
            raise TypeError(f"executor must have a map(fn, iterable) method; {type(executor).__name__} has none")
        self.space = space
        self.latency_fn = latency_fn
        self.proxy = proxy
        self.latency_budget = latency_budget
        self.budget_ms = budget_ms
        self.mode = mode
        self.population = population
        self.parents = parents
        self.generations = generations
        self.mutation_prob = mutation_prob
        self.mutation_share = mutation_share
        self.seed = seed
        self.executor = executor
        self.retries = retries
        self.checkpoint = checkpoint
        self.progress = progress
        self.timeout_s = timeout_s
        self.max_evaluations = max_evaluations
        self.patience = patience

    def settings(self) -> dict[str, Any]:
        """What shapes the search (not how it is run): a resumed search must be given the same."""
        return {"mode": self.mode, "population": self.population, "parents": self.parents,
                "generations": self.generations, "mutation_prob": self.mutation_prob,
                "mutation_share": self.mutation_share, "seed": self.seed, "latency_budget": self.latency_budget,
                "budget_ms": self.budget_ms, "signature": self.space.signature, "grid": list(self.space.grid),
                "granularity": self.space.granularity, "monotonic": self.space.monotonic}

    # ------------------------------------------------------------------ set-up
    def _toolbox(self) -> base.Toolbox:
        _create_types()
        genome = creator.SparseVitBudgetGenome if self.mode == "single" else creator.SparseVitParetoGenome
        top = len(self.space.grid) - 1
        tb = base.Toolbox()
        tb.register("gene", random.randint, 0, top)
        tb.register("individual", tools.initRepeat, genome, tb.gene, n=self.space.num_knobs)
        tb.register("genome", genome)
        tb.register("mutate", tools.mutUniformInt, low=0, up=top, indpb=self.mutation_prob)
        tb.register("mate", tools.cxUniform, indpb=0.5)
        tb.register("select", tools.selBest if self.mode == "single" else tools.selNSGA2)
        tb.register("map", map if self.executor is None else self.executor.map)  # the evaluation seam
        tb.register("score", Guarded(self.proxy))
        return tb

    def _config(self, genome: Sequence[int]) -> SparsityConfig:
        return self.space.decode(genome)

    def _repair(self, ind: list[int]) -> list[int]:
        ind[:] = self.space.encode(self._config(ind))
        return ind

    # -------------------------------------------------------------- evaluation
    def _latency(self, configs: Iterable[SparsityConfig], generation: int) -> None:
        """Predict every config not yet in the cache, in one batch."""
        new = list(dict.fromkeys(c for c in configs if c not in self._ms))
        if not new:
            return
        ms = np.asarray(self.latency_fn(new), dtype=float)
        if ms.shape != (len(new),) or not np.isfinite(ms).all():
            raise ValueError(f"latency_fn returned {ms!r} for {len(new)} configs; expected that many finite ms")
        for cfg, value in zip(new, ms):
            self._ms[cfg] = float(value)
            self._generation[cfg] = generation

    def _attempt(self, configs: list[SparsityConfig], bounded: bool) -> dict[SparsityConfig, float | Failure]:
        """One pass of ``toolbox.map`` over ``configs``: a score or a Failure for each, or,
        ``bounded`` and out of time, for those done so far (the rest are left untried).

        An error raised by the executor itself (a worker died, the pool broke) is charged
        to the config it was delivering and to every config after it, whose results are lost.
        """
        results: dict[SparsityConfig, float | Failure] = {}
        stream = iter(self._tb.map(self._tb.score, configs))
        try:
            for cfg, value in zip(configs, stream):
                results[cfg] = value
                if bounded and self._out_of_time():
                    return results
        except Exception as err:  # whatever the executor raises, the lost configs are retried
            lost = Failure.of(err)
        else:
            lost = Failure("the executor returned no result for this config")
        finally:
            close = getattr(stream, "close", None)  # a generator: cancels what a pool has not started
            if close is not None:
                close()
        return {cfg: results.get(cfg, lost) for cfg in configs}

    def _score(self, configs: Iterable[SparsityConfig], *, bounded: bool = True) -> int:
        """Score configs neither scored nor given up on, through ``toolbox.map``, retrying
        failures up to ``retries`` times; returns how many configs were tried.

        ``bounded``: within the limits, which may leave configs untried (``_cut`` says why);
        the reference configs are scored whatever the limits.
        """
        todo = list(dict.fromkeys(c for c in configs if c not in self._scores and c not in self._failed))
        if bounded and self.max_evaluations is not None:
            room = max(0, self.max_evaluations - self._evaluated())
            if len(todo) > room:
                todo, self._cut = todo[:room], "evaluations"
        pending, errors, attempts = todo, {}, 0
        while pending and attempts <= self.retries and not (bounded and attempts and self._out_of_time()):
            attempts += 1
            failed = []
            for cfg, value in self._attempt(pending, bounded).items():
                if isinstance(value, Failure):
                    failed.append(cfg)
                    errors[cfg] = value.error
                    logger.warning("evaluation of %s failed (attempt %d of %d): %s", cfg, attempts, self.retries + 1,
                                   value.error)
                else:
                    self._scores[cfg] = value
            pending = failed
        for cfg in pending:
            self._failed[cfg] = errors[cfg]
            logger.warning("giving up on %s after %d attempt(s); recorded as failed", cfg, attempts)
        tried = sum(c in self._scores or c in self._failed for c in todo)
        if tried < len(todo):
            self._cut = self._cut or "time"
        return tried

    def _evaluated(self) -> int:
        """Configs the proxy has been given so far (scored or given up on)."""
        return len(self._scores) + len(self._failed)

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _feasible(self, cfg: SparsityConfig) -> bool:
        return self._ms[cfg] <= self._budget_ms

    def _evaluate(self, individuals: list, generation: int) -> tuple[list, int]:
        """Give every individual with an invalid fitness one; returns those that have one
        (a failed evaluation takes no part in selection) and the configs scored."""
        invalid = [ind for ind in individuals if not ind.fitness.valid]
        configs = [self._config(ind) for ind in invalid]
        self._latency(configs, generation)
        wanted = configs if self.mode == "nsga2" else [c for c in configs if self._feasible(c)]
        calls = self._score(wanted)
        for ind, cfg in zip(invalid, configs):
            if cfg not in self._scores and (self.mode == "nsga2" or self._feasible(cfg)):
                continue  # failed, or left untried by a limit
            ms = self._ms[cfg]
            if self.mode == "nsga2":
                ind.fitness.values = (self._scores[cfg], ms)
            else:
                violation = max(0.0, ms / self._budget_ms - 1.0)
                ind.fitness.values = (-violation, self._scores.get(cfg, -math.inf))
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
        n_mutants = round(n * self.mutation_share)
        return self._draw(lambda slot: self._child(parents, slot < n_mutants), n, generation)

    def _draw(self, make: Callable[[int], list[int]], n: int, generation: int) -> list:
        """``n`` individuals, ``make(slot)`` each, that are new and (single mode) within budget.

        As in the reference search, every candidate should be new and meet the constraint;
        latency is cheap, so rejected draws are redrawn in a few vectorised rounds, and after
        ``NOVELTY_TRIES`` rounds a slot keeps its last draw whatever it is.
        """
        known = set(self._ms)
        drawn: dict[int, list[int]] = {}
        todo = list(range(n))
        for _ in range(NOVELTY_TRIES):
            with self._rng.active():
                draws = {i: make(i) for i in todo}
            configs = {i: self._config(ind) for i, ind in draws.items()}
            self._latency(configs.values(), generation)
            drawn.update(draws)
            todo = []
            for i, cfg in configs.items():
                if cfg in known or (self.mode == "single" and not self._feasible(cfg)):
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
        if self.mode == "single":
            uniform = [c for c in uniform if self._feasible(c)]
        room = max(1, self.population // 2)
        if len(uniform) > room:
            uniform = [uniform[int(round(i))] for i in np.linspace(0, len(uniform) - 1, room)]
        pop = [self._tb.genome(self.space.encode(c)) for c in uniform]
        return pop + self._draw(lambda slot: self._repair(self._tb.individual()), self.population - len(pop),
                                generation)

    # ---------------------------------------------------------------------- run
    def _check_budget(self) -> SparsityConfig:
        """Resolve the budget against the dense latency; refuse one nothing can meet.
        Returns the fastest uniform config."""
        uniform = [self.space.uniform(g) for g in self.space.grid]
        self._latency(uniform, 0)
        dense = self.space.dense()
        self._dense_ms = self._ms[dense]
        self._budget_ms = resolve_budget(self.latency_budget, self.budget_ms, self._dense_ms)
        fastest = min(uniform, key=self._ms.__getitem__)
        fastest_ms = self._ms[fastest]
        if self._budget_ms < fastest_ms:
            hint = ("; skipping windows barely speeds this model up here, where fixed costs dominate (try a larger "
                    "input)" if fastest_ms > 0.95 * self._dense_ms else "")
            raise ValueError(
                f"latency budget {self._budget_ms:.4g} ms cannot be met: the fastest reachable predicted latency is "
                f"{fastest_ms:.4g} ms ({fastest}, {fastest_ms / self._dense_ms:.0%} of the dense {self._dense_ms:.4g} "
                f"ms); raise the budget to at least latency_budget={math.ceil(fastest_ms / self._dense_ms * 100) / 100}"
                f" or budget_ms={fastest_ms:.4g}, or add higher sparsities to the search space's grid{hint}")
        return fastest

    def _best(self) -> tuple[SparsityConfig, float]:
        feasible = [c for c in self._scores if self._feasible(c)]
        best = max(feasible, key=lambda c: (self._scores[c], -self._ms[c]))
        return best, self._scores[best]

    def _reset(self) -> None:
        self._ms: dict[SparsityConfig, float] = {}
        self._scores: dict[SparsityConfig, float] = {}
        self._failed: dict[SparsityConfig, str] = {}  # config → error of its last attempt
        self._generation: dict[SparsityConfig, int] = {}
        self._rng = _IsolatedRandom(self.seed)
        self._logbook = tools.Logbook()
        self._logbook.header = PROGRESS_COLUMNS
        self._deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        self._cut: str | None = None  # the limit that left configs of this generation untried

    def _references(self) -> None:
        """Score dense (the reference every score is read against) and the fastest uniform
        config (feasible, so a best always exists); without them there is no search."""
        refs = [self.space.dense(), self._check_budget()]
        self._score(refs, bounded=False)
        lost = {str(c): self._failed[c] for c in refs if c in self._failed}
        if lost:
            raise RuntimeError(f"the proxy failed on the reference config(s) {lost} after {self.retries + 1} attempts; "
                               "fix the proxy (or the executor) and run again")

    def _next(self, pop: list | None, generation: int) -> tuple[list, int]:
        """The population of ``generation`` (the first when ``pop`` is None) and the configs scored for it."""
        if pop is None:
            pop, calls = self._evaluate(self._initial(generation), generation)
            if len(pop) < 2 and self._cut is None:
                raise RuntimeError(f"only {len(pop)} candidate(s) of the first population could be scored; see the "
                                   "warnings for the proxy's errors")
            if self.mode == "nsga2" and pop:
                pop = self._tb.select(pop, len(pop))  # deterministic: assigns ranks and crowding distances
            return pop, calls
        with self._rng.active():
            parents = self._tb.select(pop, self.parents)
        children, calls = self._evaluate(self._breed(parents, self.population - self.parents, generation), generation)
        with self._rng.active():
            pop = parents + children if self.mode == "single" else self._tb.select(pop + children, self.population)
        return pop, calls

    def run(self, state: SearchState | None = None) -> EvolutionOutcome:
        """Evolve, from a checkpoint's ``state`` if given; every distinct config is predicted
        once and scored (or given up on) at most once."""
        self._tb = self._toolbox()
        self._reset()
        if state is None:
            self._references()
            pop, first = None, 0
        else:
            pop, first = self._restore(state), state.generation + 1
        stop = None
        with tqdm(total=self.generations + 1, initial=first, desc=f"search ({self.mode})", unit="gen",
                  disable=not self.progress, dynamic_ncols=True) as bar:
            for generation in range(first, self.generations + 1):
                stop = self._limit_reached()
                if stop is not None:
                    break
                known = len(self._ms)
                pop, calls = self._next(pop, generation)
                self._record(generation, pop, calls, known, bar)
                stop = self._cut
                if stop is not None:
                    break  # not checkpointed: a resumed search runs this generation again, in full
                if self.checkpoint is not None:
                    self.checkpoint(self._state(generation, pop))

        stopped = None if stop is None else self._stop_message(stop)
        if stopped is not None:
            logger.log(logging.INFO if stop == "patience" else logging.WARNING, "search %s", stopped)
        best, best_score = self._best()
        logger.info("search done: %d configs predicted, %d scored, %d failed; best %s at %.4g ms, score %.4g",
                    len(self._ms), len(self._scores), len(self._failed), best, self._ms[best], best_score)
        return EvolutionOutcome(
            best=best, best_ms=self._ms[best], best_score=best_score, dense_ms=self._dense_ms,
            dense_score=self._scores[self.space.dense()], budget_ms=self._budget_ms, history=self._history(),
            progress=pd.DataFrame(list(self._logbook), columns=list(PROGRESS_COLUMNS)), stopped=stopped,
        )

    def _limit_reached(self) -> str | None:
        """The limit that ends the search before its next generation, if any."""
        if self._out_of_time():
            return "time"
        if self.max_evaluations is not None and self._evaluated() >= self.max_evaluations:
            return "evaluations"
        best = [row["best_score"] for row in self._logbook]
        if self.patience is not None and len(best) > self.patience and best[-1] <= best[-1 - self.patience]:
            return "patience"
        return None

    def _stop_message(self, limit: str) -> str:
        """When and why a limit ended the search, and the setting that would let it go on."""
        if limit == "time":
            why = (f"the time limit of {self.timeout_s:g} s was reached; pass a larger timeout_s (or None) to "
                   "search longer")
        elif limit == "evaluations":
            why = (f"the limit of {self.max_evaluations} proxy evaluations was reached; raise max_evaluations to "
                   "search longer")
        else:
            why = (f"the best score has not improved for {self.patience} generations (patience); raise patience (or "
                   "pass None) to search on")
        unfinished = " (the last one cut short)" if limit == self._cut else ""
        return f"stopped early after {len(self._logbook)} of {self.generations + 1} generations{unfinished}: {why}"

    # ------------------------------------------------------------- checkpoints
    def _state(self, generation: int, pop: list) -> SearchState:
        return SearchState(
            generation=generation, settings=self.settings(), rng_state=self._rng.to_json(),
            population=[list(ind) for ind in pop],
            predicted=[(list(c.ratios), ms, self._generation[c]) for c, ms in self._ms.items()],
            scores=[(list(c.ratios), v) for c, v in self._scores.items()],
            failed=[(list(c.ratios), e) for c, e in self._failed.items()],
            logbook=[dict(row) for row in self._logbook], dense_ms=self._dense_ms, budget_ms=self._budget_ms,
        )

    def _restore(self, state: SearchState) -> list:
        """Caches, random state and Logbook from ``state``; returns its population with fitness
        rebuilt from the caches (no prediction or proxy call)."""
        ours = self.settings()
        if state.settings != ours:
            differ = sorted(k for k in {*ours, *state.settings} if ours.get(k) != state.settings.get(k))
            raise ValueError(f"the checkpoint was made by a search with other settings ({', '.join(differ)}); "
                             "resume it with the settings it was made with (SearchSession.resume does)")
        config = self.space.config
        for ratios, ms, generation in state.predicted:
            cfg = config(ratios)
            self._ms[cfg], self._generation[cfg] = ms, generation
        self._scores.update((config(ratios), v) for ratios, v in state.scores)
        self._failed.update((config(ratios), e) for ratios, e in state.failed)
        self._rng = _IsolatedRandom.from_json(state.rng_state)
        for row in state.logbook:
            self._logbook.record(**row)
        self._dense_ms, self._budget_ms = state.dense_ms, state.budget_ms
        pop, _ = self._evaluate([self._tb.genome(g) for g in state.population], state.generation)
        return pop

    def _record(self, generation: int, pop: list, calls: int, known: int, bar: tqdm) -> None:
        """One Logbook row (and progress-bar update) per generation."""
        best, best_score = self._best()
        feasible = float(np.mean([self._feasible(self._config(ind)) for ind in pop])) if pop else math.nan
        self._logbook.record(generation=generation, new_configs=len(self._ms) - known, evaluations=calls,
                             feasible_fraction=feasible, best_score=best_score, best_ms=self._ms[best])
        bar.set_postfix(best=f"{best_score:.4g}", ms=f"{self._ms[best]:.4g}", scored=len(self._scores))
        bar.update()
        logger.debug("generation %d: %d new configs, %d scored, best %.4g at %.4g ms", generation,
                     len(self._ms) - known, calls, best_score, self._ms[best])

    def _history(self) -> pd.DataFrame:
        rows = [(self._generation[c], str(c), c.ratios, ms, self._scores.get(c, math.nan), self._feasible(c),
                 self._failed.get(c)) for c, ms in self._ms.items()]
        return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
