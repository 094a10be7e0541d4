"""A reference probe: a few milliseconds of fixed work (small matmuls and a memory copy), timed the way a
calibration times models, so a later run can tell whether the machine itself changed speed since.

A calibration is only as true as the machine it measured: another job on a shared core, a frequency
change or a move to another VM shifts every latency at once.  The probe is timed with each calibration
and again when the calibration is reused; a ratio far from 1 is said, with what to do.
"""

from __future__ import annotations

import torch

from .timing import time_callable

CHANGED = 0.10  # a probe this much slower or faster than at calibration means the machine changed


def reference_ms(clock: str = "cpu") -> float:
    """The fastest of a few runs of the fixed work on one CPU thread (``clock`` as the calibration's)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(160, 160, generator=generator)
    src = torch.randn(1 << 20, generator=generator)  # 4 MiB: past the L2 of these CPUs
    dst = torch.empty_like(src)

    def work() -> None:
        for _ in range(4):
            a @ a
        dst.copy_(src)

    return time_callable(work, "cpu", warmup=3, repeats=15, threads=1, clock=clock).min_ms


def speed_change(calibrated_ms: float, clock: str = "cpu") -> tuple[float, float]:
    """(probe now, now / at calibration): above 1 the machine runs slower than when it was calibrated."""
    now = reference_ms(clock)
    return now, now / calibrated_ms
