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

import contextlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import ModuleType
from typing import Any, NoReturn

import torch

from .._ray import HEARTBEAT_S, check_ray_address, check_reachable, heartbeat_address, init_ray, require_ray, wait_ready
from .._version import __version__
from .protocols import Executor, ExecutorError, ExecutorLost

EXECUTORS = ("local", "process", "ray")
SDK_PROBE_TIMEOUT_S = 120.0  # a node's first worker: start, set up its runtime_env, import the SDK

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

    Each task asks for ``num_cpus`` CPUs, ``num_gpus`` GPUs (default: 1 where the cluster
    has GPUs, else 0) and the custom ``resources`` (e.g. ``{"a100": 1}`` to score on the nodes
    started with ``--resources '{"a100": 1}'``), with ``runtime_env`` (e.g. ``{"working_dir": "."}``
    where the workers lack the SDK).  Ray makes the task's GPU device 0 of its worker, so a proxy
    whose model is on ``cuda`` runs on the GPU Ray gave it.

    Checked before any task, in seconds: the address answers as a Ray cluster's GCS (when this
    executor is made, and again when it connects), some node has
    what a task asks for, and every such node imports this SDK, at this version.  Ray's own
    retries are off: a call lost with its worker or node comes back, for a function with a
    ``lost(err)`` (the search's proxy), as that function's stand-in value, and the search retries
    it on the nodes left; the other calls' results are kept.  A cluster whose head is gone raises
    :class:`~.protocols.ExecutorLost`, which stops the search.
    """

    def __init__(self, address: str | None = None, *, num_cpus: float = 1, num_gpus: float | None = None,
                 resources: dict[str, float] | None = None, runtime_env: dict[str, Any] | None = None) -> None:
        self._ray = require_ray("the Ray executor")
        if address is not None or not self._ray.is_initialized():  # else the connection made is the one used
            check_ray_address(address)
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.resources, self.runtime_env = dict(resources or {}), runtime_env
        self._started = False  # whether close() should shut Ray down
        self._task: Any = None
        self._fn: Callable[[Any], Any] | None = None
        self._ref: Any = None
        self._gcs: str | None = None  # the address probed to tell a lost cluster from a lost node

    def _connect(self) -> Any:
        """The remote task, connecting to (or starting) the cluster and checking it on first use."""
        if not self._ray.is_initialized():
            init_ray(self.address, "the Ray executor")
            self._started, self._task, self._fn = True, None, None
        if self._task is None:
            gpus = self.num_gpus
            if gpus is None:
                gpus = 1 if self._ray.cluster_resources().get("GPU", 0) > 0 else 0
            options = dict(num_cpus=self.num_cpus, num_gpus=gpus, resources=self.resources, max_retries=0,
                           runtime_env=self.runtime_env)
            nodes = check_nodes(self._ray, {"CPU": self.num_cpus, "GPU": gpus, **self.resources})
            check_sdk(self._ray, nodes, options)
            self._gcs = heartbeat_address(self._ray, self.address)
            self._task = self._ray.remote(_call_stored).options(**options)
        return self._task

    def map(self, fn: Callable[[Any], Any], iterable: Iterable[Any], /) -> Iterator[Any]:
        task = self._connect()
        if fn is not self._fn:
            self._fn, self._ref = fn, self._ray.put(fn)  # into the object store once
        box = [self._ref]
        refs = [task.remote(box, item) for item in iterable]
        lost = getattr(fn, "lost", None)
        for ref in refs:
            try:
                value = self._get(ref)
            except self._ray.exceptions.RayError as err:
                if lost is None:
                    raise
                value = lost(err)
            yield value

    def _get(self, ref: Any) -> Any:
        """The task's result; a lost node raises Ray's error, a lost cluster :class:`ExecutorLost`."""
        try:
            wait_ready(self._ray, ref, self._gcs)
        except ConnectionError as err:
            self._lost("no result yet", err)
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayError as err:
            if not isinstance(err, self._ray.exceptions.RayTaskError):  # a worker or node died: the head too?
                self._check_cluster(f"{type(err).__name__}: {str(err).splitlines()[0]}")
            raise

    def _check_cluster(self, why: str) -> None:
        """Raise :class:`ExecutorLost` if the cluster's GCS no longer answers."""
        try:
            check_reachable(self._gcs, timeout_s=HEARTBEAT_S)
        except ConnectionError as err:
            self._lost(why, err)

    def _lost(self, why: str, err: ConnectionError) -> NoReturn:
        """Disconnect from a cluster whose GCS stopped answering, and raise :class:`ExecutorLost`."""
        with contextlib.suppress(Exception):  # else Ray ends this process when it gives up on the GCS
            self._ray.shutdown()
        self._started, self._task, self._fn, self._ref = False, None, None, None
        raise ExecutorLost(f"the Ray cluster at {self.address or self._gcs} was lost ({why}; its GCS at {self._gcs} "
                           "does not answer)") from err

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
        self._started, self._task, self._fn, self._ref = False, None, None, None

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_nodes(ray: ModuleType, demand: dict[str, float]) -> list[dict[str, Any]]:
    """The live nodes that have every resource of ``demand``; an :class:`ExecutorError` naming the fix
    if none has (Ray would queue the tasks for ever, waiting for such a node to join)."""
    demand = {k: v for k, v in demand.items() if v > 0}
    alive = [n for n in ray.nodes() if n["Alive"]]
    fit = [n for n in alive if all(n["Resources"].get(k, 0) >= v for k, v in demand.items())]
    if not fit:
        have = "; ".join(", ".join(f"{k}: {v:g}" for k, v in sorted(n["Resources"].items())
                                   if not k.startswith(("node:", "memory", "object_store_memory")))
                         for n in alive)
        custom = {k: v for k, v in demand.items() if k not in ("CPU", "GPU")}
        raise ExecutorError(
            f"no node of the Ray cluster has {demand} for one task (nodes: {have or 'none'}); start one that has "
            f"(`ray start --address HEAD:6379 --num-cpus N --num-gpus N --resources '{json.dumps(custom)}'`) or ask "
            "for less (RayExecutor(num_cpus=, num_gpus=, resources=))")
    return fit


def _sdk_version() -> str:
    """Ray task body: loading it imports the SDK on the worker, which is the check."""
    return __version__


def check_sdk(ray: ModuleType, nodes: list[dict[str, Any]], options: dict[str, Any]) -> None:
    """An :class:`ExecutorError` saying what to install where, unless a task on each of ``nodes``
    imports this SDK, at this version."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(_sdk_version)
    refs = {n["NodeManagerAddress"] + " " + n["NodeID"][:8]: probe.options(
        **options, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
        for n in nodes}
    deadline = time.monotonic() + SDK_PROBE_TIMEOUT_S  # one for all nodes: their workers start in parallel
    fix = (f"install it on every node (`pip install -c constraints.txt -e .` in a checkout, or `pip install "
           f"sparsevit-sdk=={__version__}`), or ship it with the tasks: RayExecutor(runtime_env={{'working_dir': "
           "'<the checkout>'})")
    for node, ref in refs.items():
        try:
            version = ray.get(ref, timeout=max(deadline - time.monotonic(), 0))
        except ray.exceptions.GetTimeoutError as err:
            for pending in refs.values():  # else they wait in the cluster's queue for ever
                ray.cancel(pending, force=True)
            raise ExecutorError(f"no worker of Ray node {node} started within {SDK_PROBE_TIMEOUT_S:g} s; check "
                                "the node's logs (its runtime_env may not install, or it has no CPU free: other "
                                "jobs' tasks hold them)") from err
        except ray.exceptions.RayError as err:
            raise ExecutorError(f"the workers of Ray node {node} cannot import sparsevit_sdk "
                                f"({str(err).strip().splitlines()[-1]}); {fix}") from err
        if version != __version__:
            raise ExecutorError(f"Ray node {node} runs sparsevit-sdk {version}, this process {__version__}: results "
                                f"would differ; {fix}")


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
