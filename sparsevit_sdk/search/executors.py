"""Where the search's proxy calls run: built-in executors for the engine's ``toolbox.map`` seam.

- ``"local"`` (or None): in this process, one after another (the default).
- :class:`ProcessExecutor`: worker processes on this machine.
- :class:`RayExecutor`: Ray tasks on a cluster, ``num_gpus`` per evaluation where it has GPUs.

The mapped function is the search's proxy, which holds a model and calibration data: it
travels to each worker once (a pool initializer; the Ray object store) and stays there, so
per candidate only a config goes out and a float comes back.  Results come back in input
order, so a search gives the same result on any executor.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from .._ray import check_reachable, init_ray, require_ray
from .protocols import Executor

EXECUTORS = ("local", "process", "ray")

_installed: tuple[str, Callable[[Any], Any]] | None = None  # (key, function) held by this worker process


def _install(key: str, fn: Callable[[Any], Any], threads: int) -> None:
    """Pool initializer: keep ``fn`` for every later call; run torch with ``threads`` threads
    (workers sharing a machine must not each use all its cores)."""
    global _installed
    _installed = (key, fn)
    torch.set_num_threads(threads)


def _call_installed(item: Any) -> Any:
    assert _installed is not None, "worker started without its function"
    return _installed[1](item)


def _call_stored(box: list, item: Any) -> Any:
    """Ray task body.  ``box`` holds the function's ObjectRef inside a list, which Ray does
    not resolve for us: the worker fetches and unpickles the function on its first call only."""
    ref = box[0]
    if _installed is None or _installed[0] != ref.hex():
        _install(ref.hex(), require_ray("the Ray executor").get(ref), torch.get_num_threads())
    return _call_installed(item)


class ProcessExecutor:
    """``workers`` processes on this machine (default: one per core), each with
    ``cpu_count // workers`` torch threads.

    Workers are started fresh (``spawn``: a forked torch can deadlock) when a new function is
    mapped, and again after one dies.  Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, workers: int | None = None, *, start_method: str = "spawn") -> None:
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.start_method = start_method
        self._pool: ProcessPoolExecutor | None = None
        self._fn: Callable[[Any], Any] | None = None

    def _pool_for(self, fn: Callable[[Any], Any]) -> ProcessPoolExecutor:
        if self._pool is None or fn is not self._fn:
            self.close()
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(self.start_method),
                                             initializer=_install, initargs=("pool", fn, threads))
            self._fn = fn
        return self._pool

    def map(self, fn: Callable[[Any], Any], iterable: Iterable[Any], /) -> Iterator[Any]:
        pool = self._pool_for(fn)
        try:
            yield from pool.map(_call_installed, iterable)
        except BrokenProcessPool:
            self.close()  # a worker died; the next map starts fresh ones
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        self._pool, self._fn = None, None

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RayExecutor:
    """One Ray task per candidate on the cluster at ``address`` (default: the one this
    process is connected to, else a new local one, shut down again by :meth:`close`).

    Each task asks for ``num_cpus`` CPUs and ``num_gpus`` GPUs (default: 1 where the cluster
    has GPUs, else 0).  Ray makes the task's GPU device 0 of its worker, so a proxy whose
    model is on ``cuda`` runs on the GPU Ray gave it.  Ray's own retries are off: the search
    retries failed evaluations itself and records those that keep failing.  An address where
    no cluster answers is a ConnectionError here, in seconds, before any work.
    """

    def __init__(self, address: str | None = None, *, num_cpus: float = 1, num_gpus: float | None = None) -> None:
        self._ray = require_ray("the Ray executor")
        check_reachable(address)
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self._started = False  # whether close() should shut Ray down
        self._task: Any = None
        self._fn: Callable[[Any], Any] | None = None
        self._ref: Any = None

    def _connect(self) -> Any:
        """The remote task, connecting to (or starting) the cluster on first use."""
        if not self._ray.is_initialized():
            init_ray(self.address, "the Ray executor")
            self._started, self._task, self._fn = True, None, None
        if self._task is None:
            gpus = self.num_gpus
            if gpus is None:
                gpus = 1 if self._ray.cluster_resources().get("GPU", 0) > 0 else 0
            self._task = self._ray.remote(_call_stored).options(num_cpus=self.num_cpus, num_gpus=gpus, max_retries=0)
        return self._task

    def map(self, fn: Callable[[Any], Any], iterable: Iterable[Any], /) -> Iterator[Any]:
        task = self._connect()
        if fn is not self._fn:
            self._fn, self._ref = fn, self._ray.put(fn)  # into the object store once
        box = [self._ref]
        refs = [task.remote(box, item) for item in iterable]
        for ref in refs:
            yield self._ray.get(ref)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
        self._started, self._task, self._fn, self._ref = False, None, None, None

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_executor(executor: Executor | str | None, *, workers: int | None = None,
                     address: str | None = None) -> Executor | None:
    """An executor from a name in :data:`EXECUTORS` (None and "local" mean in-process), or
    ``executor`` itself if it already has a ``map``."""
    if executor is None or not isinstance(executor, str):
        return executor
    if executor == "local":
        return None
    if executor == "process":
        return ProcessExecutor(workers)
    if executor == "ray":
        return RayExecutor(address)
    raise ValueError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)} or an object with "
                     "map(fn, iterable)")
