"""One candidate scored by many workers: a proxy's batches split into parts, merged exactly.

A scoring set too large for one worker's time (SparseViT scored every candidate on all of
COCO val, on 8 GPUs) is cut into ``parts`` contiguous slices of batches.  Each slice is scored
by one call of an executor's ``map`` (the same seam the search spreads candidates over: a
:class:`~sparsevit_sdk.search.executors.ProcessExecutor`, a ``RayExecutor``, any object with
``map``), and returns a state, not a score: a confusion matrix, counts, per-image values.  The
states merge in part order into the score one worker computes over the whole set, to the last
bit, because one worker computes it by the same merge (see ``SplittableProxy``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..config import SparsityConfig
from .proxy import CachedProxy, Part, SplittableProxy, part_range


class Mapper(Protocol):
    """Anything with the builtin ``map``'s signature: the search's executors, ``concurrent.futures``
    executors, ``multiprocessing.Pool``."""

    def map(self, fn: Callable[[Any], Any], iterable: Iterable[Any], /) -> Iterable[Any]: ...


class SplitProxy(CachedProxy):
    """``proxy`` with each config's scoring split into ``parts`` over ``executor`` (in this process
    without one), cached by config like any proxy, under ``proxy``'s name: its scores are the same.

    Run the search in-process (its default executor) with this as its proxy: the workers score
    parts of one candidate, not candidates.  The proxy (model and batches) goes to each worker
    once, as a search's proxy does; per part a config and a part number go out and a state comes back.
    A thread pool gives the same score, but its parts share one model, whose sparsity is the
    model's own state, so they take turns (``sparse/state.py``): use processes or Ray for speed.
    """

    def __init__(self, proxy: SplittableProxy, *, parts: int, executor: Mapper | None = None) -> None:
        if not isinstance(proxy, SplittableProxy):
            raise TypeError(f"SplitProxy splits an AccuracyProxy or AgreementProxy (a SplittableProxy), got "
                            f"{type(proxy).__name__}; a proxy of your own can subclass SplittableProxy")
        if executor is not None and not callable(getattr(executor, "map", None)):
            raise TypeError(f"executor must have a map(fn, iterable) method; {type(executor).__name__} has none")
        proxy.check_splittable()
        part_range(len(proxy.batches), 0, parts)  # refuses a bad parts now, not at the first call
        super().__init__(proxy.model)
        self.proxy, self.parts, self.executor, self.name = proxy, parts, executor, proxy.name
        self._score_part = proxy.score_part  # one object, so an executor ships the proxy to its workers once

    def _evaluate(self, config: SparsityConfig) -> float:
        mapped = map if self.executor is None else self.executor.map
        states = list(mapped(self._score_part, [Part(config, i, self.parts) for i in range(self.parts)]))
        return self.proxy.merge_states(states)

    def noise(self, score: float) -> float | None:
        """The split proxy's (see :meth:`AccuracyProxy.noise`), where it says."""
        noise = getattr(self.proxy, "noise", None)
        return None if noise is None else noise(score)

    def chance(self) -> float | None:
        """The split proxy's (see :meth:`AccuracyProxy.chance`), where it says."""
        chance = getattr(self.proxy, "chance", None)
        return None if chance is None else chance()

    def cache_clear(self) -> None:
        """Forget this proxy's scores and those of the proxy it splits (whose dense outputs, if any,
        are recomputed from the weights as they are now)."""
        super().cache_clear()
        self.proxy.cache_clear()

    def __getstate__(self) -> dict:
        if self.executor is not None:
            raise TypeError("a SplitProxy maps its parts over its own executor and cannot be sent to a worker; run "
                            "the search in-process (executor='local', the default) and give the executor to SplitProxy")
        return self.__dict__
