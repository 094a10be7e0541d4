"""What the engine is given: a batch latency function, a proxy, and an executor to map it with.

The engine, the built-in executors and the session all import these from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from ..config import SparsityConfig

LatencyFn = Callable[[list[SparsityConfig]], np.ndarray]  # configs → predicted ms, one batch (cheap)
Proxy = Callable[[SparsityConfig], float]  # config → score, higher is better (expensive)


class Executor(Protocol):
    """Anything with ``map`` (the builtin's signature): ``concurrent.futures`` executors, Ray
    pools, ``multiprocessing.Pool``.  Where the mapped function has ``lost(err)`` (the search's
    proxy does), an executor may yield ``fn.lost(err)`` for a call it lost, keeping the others."""

    def map(self, fn: Callable[[Any], Any], iterable: Iterable[Any], /) -> Iterable[Any]: ...


class ExecutorError(RuntimeError):
    """The executor cannot run proxy calls at all (a resource no node has, workers without the SDK),
    as opposed to one call failing: the search stops with it instead of recording every config failed."""


class ExecutorLost(ExecutorError):
    """The executor's workers are gone mid-search (a Ray cluster whose head died): the search stops,
    and resumes from its checkpoint on a new one."""


def proxy_name(proxy: Proxy) -> str:
    """What a proxy is called in messages, results and checkpoints."""
    return str(getattr(proxy, "name", None) or getattr(proxy, "__name__", None) or type(proxy).__name__)


def check_executor(executor: Executor | None) -> None:
    """Refuse an executor without ``map`` before any work."""
    if executor is not None and not callable(getattr(executor, "map", None)):
        raise TypeError(f"executor must have a map(fn, iterable) method; {type(executor).__name__} has none")
