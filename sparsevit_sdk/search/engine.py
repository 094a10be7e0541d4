"""The search engine: one driver for every strategy, holding everything but the choice of configs.

The engine knows nothing about models or devices: it takes a batch latency function
``latency_fn(configs) -> ms`` (cheap, vectorised), a proxy ``proxy(cfg) -> float``
(expensive, higher is better) and a :class:`~.strategy.SearchStrategy` (by name, ``"ga"`` by
default, or an object) that proposes configs round by round (ask/tell, see :mod:`.strategy`).
Proxy calls go through ``executor.map`` only, so an executor with a ``map(fn, iterable)``
method can spread them over processes or machines.

What is the engine's, the same for every strategy:

- the references: dense (what every score is read against) and the fastest uniform config
  (within the budget, so a best always exists) are scored first, and a budget nothing can
  meet is refused before any proxy call; a proxy whose references show it cannot rank is named
  in a warning before the search optimises it (:mod:`.ranking`; ``SearchOutcome.proxy_warning``);
- the budget rule: for a ``"budget"`` objective a config over the budget is never given to
  the proxy; for a ``"pareto"`` one every config is scored, and the budget only picks ``best``;
- the cache (:class:`~.evaluation.Ledger`): every distinct config is predicted once and scored
  (or given up on) at most once; failed evaluations are retried, then recorded;
- the strategy's answers, checked in one place (:meth:`SearchEngine._proposals`): configs of the
  space, or one value per knob (a list, a tuple, a numpy row) made into one; ``[]`` means the
  strategy is done, and the search ends saying so; anything off the grid, of another length or
  model is refused naming the strategy and the config;
- the limits, which end a search early with a sentence saying which (``SearchOutcome.stopped``):
  ``timeout_s`` (wall time of this run), ``max_evaluations`` (proxy evaluations over the whole
  search) and ``patience`` (generations, i.e. rounds, without a better best score);
- checkpoints: with a ``checkpoint`` callback the engine hands over its :class:`SearchState`
  (its cache and the strategy's ``state_dict()``) after every finished generation, and
  ``run(state)`` continues from one to exactly the result of an unbroken run.  A generation cut
  short by a limit is not checkpointed (a resumed search runs it again).  Without a time limit
  that fires, a seed reproduces the search exactly.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .._progress import progress_bar
from ..checks import ArgumentError, Count, check, number
from ..config import SearchSpace, SparsityConfig
from .checkpoint import SearchState
from .evaluation import Ledger
from .outcome import PROGRESS_COLUMNS, SearchOutcome
from .protocols import Executor, LatencyFn, Proxy, check_executor
from .ranking import proxy_warning
from .settings import FIELDS, SearchSettings, resolve_budget, settings_from, space_settings
from .strategies import DEFAULT_STRATEGY, resolve_strategy
from .strategy import Objective, SearchStrategy

logger = logging.getLogger(__name__)
Ratio = number(ge=0, lt=1)  # one knob's sparsity, as a strategy may propose it


class SearchEngine:
    """Search per-knob sparsity under a latency budget with ``strategy`` (see module docstring).

    ``strategy`` is a built-in strategy's name (``"ga"``, ``"nsga2"``, ``"random"``), built
    from the keywords that are its own (``population=100, ...``), or a strategy object.  The
    search settings are a :class:`SearchSettings`, given as ``settings`` or as its fields'
    keywords (``latency_budget=0.7, seed=0, ...``; ``timeout_s`` defaults to None here, no
    time limit, unlike in :class:`SearchSession`), and read back as ``engine.settings`` or one
    by one (``engine.timeout_s``).  Proxy calls go through ``executor.map`` if given;
    ``checkpoint(state)`` is called after every finished generation.
    """

    def __init__(
        self,
        space: SearchSpace,
        latency_fn: LatencyFn,
        proxy: Proxy,
        *,
        strategy: str | SearchStrategy = DEFAULT_STRATEGY,
        executor: Executor | None = None,
        checkpoint: Callable[[SearchState], None] | None = None,
        progress: bool = False,
        settings: SearchSettings | None = None,
        **options: Any,
    ) -> None:
        self.strategy, options = resolve_strategy(strategy, options, caller="SearchEngine")
        self.settings = settings_from(settings, options, caller="SearchEngine", timeout_s=None)
        check(self.strategy.rounds, Count, name="strategy.rounds", caller="SearchEngine")
        check(self.strategy.objective, Objective, name="strategy.objective", caller="SearchEngine")
        check_executor(executor)
        self.space, self.latency_fn, self.proxy = space, latency_fn, proxy
        self.executor, self.checkpoint, self.progress = executor, checkpoint, progress

    def __getattr__(self, name: str) -> Any:
        """``engine.timeout_s``, ``engine.seed``, ...: the fields of :attr:`settings`."""
        if name in FIELDS:
            return getattr(self.__dict__["settings"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def shape(self) -> dict[str, Any]:
        """What shapes the search (not how it is run): a resumed search must be given the same."""
        return {**self.settings.shape(), **space_settings(self.space), "strategy": self.strategy.name,
                "strategy_options": self.strategy.options()}

    # ---------------------------------------------------------------------- run
    def _check_budget(self) -> SparsityConfig:
        """Resolve the budget against the dense latency; refuse one nothing can meet.
        Returns the fastest uniform config."""
        ledger, s = self._ledger, self.settings
        uniform = [self.space.uniform(g) for g in self.space.grid]
        ledger.predict(uniform)
        self._dense_ms = ledger.predicted[self.space.dense()]
        ledger.budget_ms = budget_ms = resolve_budget(s.latency_budget, s.budget_ms, self._dense_ms)
        fastest = min(uniform, key=ledger.predicted.__getitem__)
        fastest_ms = ledger.predicted[fastest]
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
        self._ledger = Ledger(self.space, self.latency_fn, self.proxy, self.executor, retries=s.retries,
                              max_evaluations=s.max_evaluations, out_of_time=self._out_of_time)
        self._logbook: list[dict[str, Any]] = []
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

    def _proposals(self) -> list[SparsityConfig]:
        """The strategy's next configs, each made a config of the space or refused; [] once it is done."""
        answer, name = self.strategy.ask(), self.strategy.name
        if isinstance(answer, str | bytes | SparsityConfig) or not isinstance(answer, Sequence | np.ndarray):
            raise TypeError(f"strategy {name!r}: ask() returned {answer!r:.100}, not a list; it returns the configs "
                            "of the next round (SparsityConfig or one value per knob each), or [] once it is done")
        return [self._proposal(item, name) for item in answer]

    def _proposal(self, item: Any, strategy: str) -> SparsityConfig:
        """``item`` (a config, or one value per knob) as a config of the space, on its grid."""
        space = self.space
        try:
            if isinstance(item, SparsityConfig):
                space.validate(item)
                cfg = item
            elif isinstance(item, str | bytes) or not isinstance(item, Sequence | np.ndarray):
                raise ValueError("it is neither a SparsityConfig nor a sequence of one sparsity per knob")
            else:
                cfg = space.config([check(r, Ratio, name="knob value", caller="config") for r in item])
            off = [r for r in cfg.ratios if r not in {round(g, 6) for g in space.grid}]  # (as configs round)
            if off:
                raise ValueError(f"values {off} are off the search space's grid {list(space.grid)}")
        except (ArgumentError, ValueError) as err:
            raise ValueError(f"strategy {strategy!r} proposed {item!r:.200}, not a config of this search: {err}; "
                             "propose configs of problem.space (space.config(ratios) with values of space.grid, or "
                             "space.decode(genome))") from err
        return cfg

    def _round(self, asked: list[SparsityConfig]) -> int:
        """Score the strategy's proposals ``asked``, tell it their trials; returns the configs scored."""
        ledger = self._ledger
        ledger.predict(asked)
        budget = self.strategy.objective == "budget"
        calls = ledger.score([c for c in asked if not budget or ledger.feasible(c)])
        if ledger.cut is None:  # a round cut short is not told: the search ends, and a resume runs it again
            self.strategy.tell([ledger.trial(c) for c in asked])
        return calls

    def run(self, state: SearchState | None = None) -> SearchOutcome:
        """Search, from a checkpoint's ``state`` if given; every distinct config is predicted
        once and scored (or given up on) at most once."""
        self._reset()
        ledger, strategy = self._ledger, self.strategy
        if state is None:
            self._references()
            strategy.start(ledger, self.settings.seed)
            first = 0
        else:
            self._restore(state)
            first = state.generation + 1
        warning = proxy_warning(self.proxy, ledger.scores, self.space.dense())
        if warning is not None:
            logger.warning("%s", warning)
        stop, rounds = None, strategy.rounds
        with progress_bar(total=rounds, initial=first, desc=f"search ({strategy.name})", unit="gen",
                          enabled=self.progress) as bar:
            for generation in range(first, rounds):
                stop = self._limit_reached()
                if stop is not None:
                    break
                known = len(ledger.predicted)
                ledger.current = generation
                asked = self._proposals()
                if not asked:
                    stop = "finished"
                    break
                calls = self._round(asked)
                self._record(generation, asked, calls, known, bar)
                stop = ledger.cut
                if stop is not None:
                    break  # not checkpointed: a resumed search runs this generation again, in full
                if self.checkpoint is not None:
                    self.checkpoint(self._state(generation))

        stopped = None if stop is None else self._stop_message(stop)
        if stopped is not None:
            logger.log(logging.INFO if stop in ("patience", "finished") else logging.WARNING, "search %s", stopped)
        best, best_score = ledger.best()
        logger.info("search done: %d configs predicted, %d scored, %d failed; best %s at %.4g ms, score %.4g",
                    len(ledger.predicted), len(ledger.scores), len(ledger.failed), best, ledger.predicted[best],
                    best_score)
        return SearchOutcome(
            best=best, best_ms=ledger.predicted[best], best_score=best_score, dense_ms=self._dense_ms,
            dense_score=ledger.scores[self.space.dense()], budget_ms=ledger.budget_ms, history=ledger.history(),
            progress=pd.DataFrame(self._logbook, columns=list(PROGRESS_COLUMNS)), stopped=stopped,
            retried=ledger.retried, proxy_warning=warning,
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
        """When and why the strategy or a limit ended the search (and the setting that would let it go on)."""
        if limit == "finished":
            return (f"finished after {len(self._logbook)} of {self.strategy.rounds} generations: strategy "
                    f"{self.strategy.name!r} had no more configs to propose (its ask() returned [])")
        unfinished = " (the last one cut short)" if limit == self._ledger.cut else ""
        return (f"stopped early after {len(self._logbook)} of {self.strategy.rounds} generations"
                f"{unfinished}: {self.settings.limit_message(limit)}")

    # ------------------------------------------------------------- checkpoints
    def _state(self, generation: int) -> SearchState:
        return SearchState(
            generation=generation, settings=self.shape(), strategy=self.strategy.state_dict(),
            **self._ledger.entries(), logbook=list(self._logbook), dense_ms=self._dense_ms,
            budget_ms=self._ledger.budget_ms,
        )

    def _restore(self, state: SearchState) -> None:
        """The cache and the Logbook from ``state``, then the strategy on them (no prediction or proxy call)."""
        ours = self.shape()
        if state.settings != ours:
            differ = sorted(k for k in {*ours, *state.settings} if ours.get(k) != state.settings.get(k))
            raise ValueError(f"the checkpoint was made by a search with other settings ({', '.join(differ)}); "
                             "resume it with the settings it was made with (SearchSession.resume does)")
        ledger = self._ledger
        ledger.restore(state.predicted, state.scores, state.failed)
        ledger.current = state.generation
        self._logbook = [dict(row) for row in state.logbook]
        self._dense_ms, ledger.budget_ms = state.dense_ms, state.budget_ms
        self.strategy.start(ledger, self.settings.seed)
        self.strategy.load_state_dict(state.strategy)

    def _record(self, generation: int, asked: list[SparsityConfig], calls: int, known: int, bar: tqdm) -> None:
        """One Logbook row (and progress-bar update) per generation."""
        ledger = self._ledger
        best, best_score = ledger.best()
        feasible = float(np.mean([ledger.feasible(c) for c in asked])) if asked else math.nan
        self._logbook.append(dict(generation=generation, new_configs=len(ledger.predicted) - known, evaluations=calls,
                                  feasible_fraction=feasible, best_score=best_score,
                                  best_ms=ledger.predicted[best]))
        bar.set_postfix(best=f"{best_score:.4g}", ms=f"{ledger.predicted[best]:.4g}", scored=len(ledger.scores),
                        refresh=False)
        bar.update()
        logger.debug("generation %d: %d new configs, %d scored, best %.4g at %.4g ms", generation,
                     len(ledger.predicted) - known, calls, best_score, ledger.predicted[best])
