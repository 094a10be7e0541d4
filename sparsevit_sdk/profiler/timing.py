"""Latency measurement: warm-up, repeats, robust statistics.

On CUDA each repeat is bracketed by CUDA events and a synchronize; on the CPU by
``time.perf_counter``.  Medians drift on a shared machine, so the low percentiles
(``p10_ms``, ``min_ms``) are reported too: they are the stable statistic to fit on.

``clock="cpu"`` times single-threaded CPU runs with the calling thread's CPU time
instead: when other processes hold the cores, wall time counts the time this thread
waited for one (4x on a loaded 2-core machine), CPU time does not.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from .._logs import warn_once
from ..arch import check_input_shape
from ..dataset.schema import PROFILE_COLUMNS
from ..devices import TORCH_DTYPES, dtype_name, resolve_device
from ..runtimes import check_runtime, runtime_call
from ..sparse.state import preserved

logger = logging.getLogger(__name__)

CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated timings, all in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    repeats: int
    threads: int
    device: str

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], threads: int, device: str) -> LatencyStats:
        s = np.asarray(samples_ms, dtype=float)
        return cls(
            median_ms=float(np.median(s)),
            p10_ms=float(np.percentile(s, 10)),
            p90_ms=float(np.percentile(s, 90)),
            min_ms=float(s.min()),
            mean_ms=float(s.mean()),
            repeats=len(s),
            threads=threads,
            device=device,
        )

    @property
    def spread(self) -> float:
        """``p90_ms / p10_ms``: about 1.0-1.1 for a steady measurement; well above, something else ran."""
        return self.p90_ms / self.p10_ms

    def to_dict(self) -> dict:
        return asdict(self)

    def profile_columns(self) -> dict[str, float]:
        """The times as a profile row's columns (the median as ``latency_ms``)."""
        return {column: getattr(self, name) for name, column in PROFILE_COLUMNS.items()}


@contextmanager
def num_threads(threads: int | None):
    """Temporarily pin torch's intra-op thread count (None leaves it alone)."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_callable(
    fn: Callable[[], object],
    device: str | torch.device = "cpu",
    *,
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = None,
    clock: str = "wall",
) -> LatencyStats:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; use 'wall' or 'cpu'")
    dev = resolve_device(device)
    samples = []
    with num_threads(threads), torch.inference_mode():
        if clock == "cpu" and (dev.type != "cpu" or torch.get_num_threads() != 1):
            raise ValueError("clock='cpu' measures one thread's CPU time: use it on the CPU with threads=1")
        timer = CLOCKS[clock]
        for _ in range(warmup):
            fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            for _ in range(repeats):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
        else:
            for _ in range(repeats):
                t0 = timer()
                fn()
                samples.append((timer() - t0) * 1e3)
        return LatencyStats.from_samples(samples, torch.get_num_threads(), str(dev))


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    *,
    warmup: int = 3,
    repeats: int = 10,
    dtype: str | torch.dtype = "fp32",
    threads: int | None = None,
    clock: str = "wall",
    runtime: str = "eager",
) -> LatencyStats:
    """Forward latency of ``model`` on a random input of ``input_shape`` (B, C, H, W).

    The model runs on ``device`` in ``dtype`` ("fp32", "fp16", "bf16" or a ``torch.dtype``), in
    eval mode, and is left as it was afterwards (mode, device, dtype, each tensor bit for bit;
    its sparsity is what is timed).  ``runtime``
    is "eager", "compiled" (``torch.compile``) or "onnxruntime" (exported at the model's
    current sparsity); compiling or exporting happens before the timed calls.

    Args:
        model: any ``nn.Module`` taking one image batch (a built-in or sparsified Swin, at the
            sparsity it has).
        input_shape: ``(B, C, H, W)`` of the random input, in pixels.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        warmup: untimed calls first.
        repeats: timed calls; the statistics are over these.
        dtype: ``"fp32"``, ``"fp16"``, ``"bf16"`` or a ``torch.dtype``.
        threads: CPU threads for the calls (None: torch's current setting).
        clock: ``"wall"``, or ``"cpu"`` (the thread's CPU-time clock: steadier on a shared
            machine, single-threaded only); CUDA is timed with events after a synchronise.
        runtime: ``"eager"``, ``"compiled"`` or ``"onnxruntime"``.

    Returns:
        A :class:`LatencyStats` in milliseconds: ``median_ms``, ``p10_ms``, ``p90_ms``,
        ``min_ms``, with the repeats, threads and device; an unsteady measurement (a wide
        spread) is also logged as a warning, once.

    Raises:
        ValueError: a malformed ``input_shape``, an unknown dtype or runtime, or a clock the
            runtime cannot be timed with.
    """
    shape = check_input_shape(input_shape)
    dev = resolve_device(device)
    torch_dtype = TORCH_DTYPES[dtype_name(dtype)]
    check_runtime(runtime, clock)
    with preserved(model, training=False, device=dev, dtype=torch_dtype):
        x = torch.randn(*shape, device=dev, dtype=torch_dtype)
        with num_threads(threads):  # compiled or exported on the threads it is timed on
            call = runtime_call(model, x, runtime, threads=threads)
        stats = time_callable(call, dev, warmup=warmup, repeats=repeats, threads=threads, clock=clock)
    for kind, message in unsteady(stats):
        warn_once(logger, kind, "measure_latency: %s", message)
    return stats


WIDE_SPREAD = 1.5  # p90 / p10 above which one measurement is called unsteady


def usable_cores() -> int:
    """The cores this process may run on (its affinity), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def unsteady(stats: LatencyStats) -> list[tuple[str, str]]:
    """(kind, message) for every reason not to trust ``stats`` as the model's latency: more threads than
    usable cores, a spread wider than :data:`WIDE_SPREAD`.  A newcomer timed 526-1150 ms at 2 threads on a
    loaded 2-core machine for a model that takes 11.5 ms at one; each of these would have said so."""
    reasons = []
    if stats.device == "cpu" and stats.threads > usable_cores():
        reasons.append(("oversubscribed", f"{stats.threads} threads on {usable_cores()} usable cores: threads wait "
                                          "for each other; use threads <= the cores (1 is steadiest)"))
    if stats.spread > WIDE_SPREAD:
        reasons.append(("spread", f"p90 is {stats.spread:.2f}x p10 ({stats.p10_ms:.4g}-{stats.p90_ms:.4g} ms): "
                                  "the machine was busy or changing speed; the low percentile (p10_ms) is the one "
                                  "to read, and threads=1, clock='cpu' on a quieter machine the steadiest"))
    return reasons
