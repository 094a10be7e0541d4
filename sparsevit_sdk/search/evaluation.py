"""The search's ledger: every config predicted, scored or given up on, and how scoring is done.

The ledger is the engine's cache and the :class:`~.strategy.Problem` a strategy proposes
with.  Latency is predicted in one batch per call, once per distinct config.  Scores go
through ``map`` (the builtin, or an executor's: the seam where proxy calls spread over
processes or machines) of the proxy made :class:`Guarded`.

Fault tolerance: a proxy call that raises (in any worker), returns anything but a real
finite number, or is lost by the executor (its worker died) is retried up to ``retries``
times in the same generation, then recorded as failed (``history["error"]``) and left out of
selection; the search goes on.  ``retried`` counts the calls made again.  An
:class:`~.protocols.ExecutorError` (an executor that can run nothing: its cluster is lost)
stops the search instead.

Limits: ``max_evaluations`` counts configs given to the proxy over the whole search
(references included); the time limit is checked after every proxy call, so it overshoots by
at most one.  A limit that leaves configs of a generation untried is recorded in ``cut``.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import SearchSpace, SparsityConfig
from .outcome import HISTORY_COLUMNS
from .protocols import Executor, ExecutorError, LatencyFn, Proxy, proxy_name
from .strategy import Trial

logger = logging.getLogger(__name__)


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

    This is what goes through the executor's ``map``: one raising candidate (or one NaN) must not
    take the results of the others in its batch, or the search, down with it.  Nothing is
    converted: ``'0.5'`` or ``True`` from a proxy is a bug in it, not a score.
    """

    def __init__(self, fn: Proxy) -> None:
        self.fn = fn

    @staticmethod
    def lost(err: BaseException) -> Failure:
        """What an executor yields for a call it lost (its worker or node died): this config's
        failure, retried like any other, while the other calls' results are kept."""
        return Failure(f"{type(err).__name__}: {str(err).strip().splitlines()[0]}")

    def __call__(self, cfg: SparsityConfig) -> float | Failure:
        try:
            value = self.fn(cfg)
        except Exception as err:  # any proxy error is this candidate's failure, reported in history
            return Failure.of(err)
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        return Failure(f"proxy {proxy_name(self.fn)!r} returned {value!r} ({type(value).__name__}); a proxy must "
                       "return a real, finite number (higher is better), e.g. float(score)")


class Ledger:
    """Predictions, scores and failures of one search of ``space``, in the order configs were first seen.

    Proxy calls go through ``executor.map`` (the builtin ``map`` without one); ``out_of_time()``
    says whether this run's time is up.  ``budget_ms`` is set once the budget is resolved
    against the dense latency; ``current`` is the generation configs predicted now are first seen in.
    """

    def __init__(self, space: SearchSpace, latency_fn: LatencyFn, proxy: Proxy, executor: Executor | None, *,
                 retries: int, max_evaluations: int | None, out_of_time: Callable[[], bool]) -> None:
        self.space, self.latency_fn, self.score_fn = space, latency_fn, Guarded(proxy)
        self.map = map if executor is None else executor.map
        self.retries, self.max_evaluations, self.out_of_time = retries, max_evaluations, out_of_time
        self.predicted: dict[SparsityConfig, float] = {}
        self.scores: dict[SparsityConfig, float] = {}
        self.failed: dict[SparsityConfig, str] = {}  # config → error of its last attempt
        self.generation: dict[SparsityConfig, int] = {}  # config → generation it was first seen in
        self.budget_ms = math.inf
        self.current = 0
        self.cut: str | None = None  # the limit that left configs of this generation untried
        self.retried = 0  # proxy calls made again after a failed attempt

    def predict(self, configs: Iterable[SparsityConfig]) -> None:
        """Predict every config not yet in the cache, in one batch."""
        new = list(dict.fromkeys(c for c in configs if c not in self.predicted))
        if not new:
            return
        ms = np.asarray(self.latency_fn(new), dtype=float)
        if ms.shape != (len(new),) or not np.isfinite(ms).all():
            raise ValueError(f"latency_fn returned {ms!r} for {len(new)} configs; expected that many finite ms")
        for cfg, value in zip(new, ms):
            self.predicted[cfg] = float(value)
            self.generation[cfg] = self.current

    def feasible(self, cfg: SparsityConfig) -> bool:
        return self.predicted[cfg] <= self.budget_ms

    def trial(self, cfg: SparsityConfig) -> Trial:
        return Trial(cfg, self.predicted[cfg], self.feasible(cfg), self.scores.get(cfg))

    def evaluated(self) -> int:
        """Configs the proxy has been given so far (scored or given up on)."""
        return len(self.scores) + len(self.failed)

    def best(self) -> tuple[SparsityConfig, float]:
        """The best-scoring feasible config (the faster of equals) and its score."""
        feasible = [c for c in self.scores if self.feasible(c)]
        best = max(feasible, key=lambda c: (self.scores[c], -self.predicted[c]))
        return best, self.scores[best]

    def _attempt(self, configs: list[SparsityConfig], bounded: bool) -> dict[SparsityConfig, float | Failure]:
        """One pass of ``map`` over ``configs``: a score or a Failure for each, or,
        ``bounded`` and out of time, for those done so far (the rest are left untried).

        An error raised by the executor itself (a worker died, the pool broke) is charged
        to the config it was delivering and to every config after it, whose results are lost.
        """
        results: dict[SparsityConfig, float | Failure] = {}
        stream = iter(self.map(self.score_fn, configs))
        try:
            for cfg, value in zip(configs, stream):
                results[cfg] = value
                if bounded and self.out_of_time():
                    return results
        except ExecutorError:
            raise  # nothing can be scored any more: the search stops (and resumes from its checkpoint)
        except Exception as err:  # whatever else the executor raises, the lost configs are retried
            lost = Failure.of(err)
        else:
            lost = Failure("the executor returned no result for this config")
        finally:
            close = getattr(stream, "close", None)  # a generator: cancels what a pool has not started
            if close is not None:
                close()
        return {cfg: results.get(cfg, lost) for cfg in configs}

    def score(self, configs: Iterable[SparsityConfig], *, bounded: bool = True) -> int:
        """Score configs neither scored nor given up on, through ``map``, retrying
        failures up to ``retries`` times; returns how many configs were tried.

        ``bounded``: within the limits, which may leave configs untried (``cut`` says why);
        the reference configs are scored whatever the limits.
        """
        todo = list(dict.fromkeys(c for c in configs if c not in self.scores and c not in self.failed))
        if bounded and self.max_evaluations is not None:
            room = max(0, self.max_evaluations - self.evaluated())
            if len(todo) > room:
                todo, self.cut = todo[:room], "evaluations"
        pending, errors, attempts = todo, {}, 0
        while pending and attempts <= self.retries and not (bounded and attempts and self.out_of_time()):
            attempts += 1
            self.retried += len(pending) if attempts > 1 else 0
            failed = []
            for cfg, value in self._attempt(pending, bounded).items():
                if isinstance(value, Failure):
                    failed.append(cfg)
                    errors[cfg] = value.error
                    logger.warning("evaluation of %s failed (attempt %d of %d): %s", cfg, attempts, self.retries + 1,
                                   value.error)
                else:
                    self.scores[cfg] = value
            pending = failed
        for cfg in pending:
            self.failed[cfg] = errors[cfg]
            logger.warning("giving up on %s after %d attempt(s); recorded as failed", cfg, attempts)
        tried = sum(c in self.scores or c in self.failed for c in todo)
        if tried < len(todo):
            self.cut = self.cut or "time"
        return tried

    # ------------------------------------------------------------- checkpoints
    def entries(self) -> dict[str, list]:
        """The ledger as a checkpoint stores it: configs as ratio lists, in first-seen order."""
        return {"predicted": [(list(c.ratios), ms, self.generation[c]) for c, ms in self.predicted.items()],
                "scores": [(list(c.ratios), v) for c, v in self.scores.items()],
                "failed": [(list(c.ratios), e) for c, e in self.failed.items()]}

    def restore(self, predicted: list, scores: list, failed: list) -> None:
        """Fill the ledger from checkpoint entries (see :meth:`entries`)."""
        config = self.space.config
        for ratios, ms, generation in predicted:
            cfg = config(ratios)
            self.predicted[cfg], self.generation[cfg] = ms, generation
        self.scores.update((config(ratios), v) for ratios, v in scores)
        self.failed.update((config(ratios), e) for ratios, e in failed)

    def history(self) -> pd.DataFrame:
        """One row per distinct config, in first-seen order (see :data:`HISTORY_COLUMNS`)."""
        rows = [(self.generation[c], str(c), c.ratios, ms, self.scores.get(c, math.nan), self.feasible(c),
                 self.failed.get(c)) for c, ms in self.predicted.items()]
        return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
