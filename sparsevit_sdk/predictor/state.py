"""What a latency predictor has learned, as one immutable record.

Fitting, loading, estimating and calibrating each return a new :class:`Learned`; nothing
writes into one (``dataclasses.replace`` makes the next), so a calibration that tries
several corrections never has to put the old ones back.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Learned:
    """A fitted predictor's state.

    ``hw`` is the target's name; ``estimated`` says no measurement of it stands behind the
    numbers (then ``estimate`` holds the GPU cost model and its specs, and there are no
    boosters).  Per unit kind, ``linear`` is the analytic base ``c0 + c1·FLOPs + c2·bytes`` and
    ``boosters`` the log-ratio to it.  A whole model is ``scale[block kind] · Σ units +
    overhead_ms``; ``unit_scale`` and ``unit_curves`` are calibration's corrections of the units
    (group scales over sparsity, residual curves over kept windows).  ``rest`` holds what whole
    models cost beyond their backbone where the profile timed them (:mod:`.rest`).
    """

    hw: str
    estimated: bool
    estimate: dict[str, Any] | None
    statistic: str
    dtype: str
    threads: list[int]
    runtime: str
    fingerprint: dict[str, Any]
    linear: dict[str, np.ndarray]
    boosters: dict[str, Any]
    scale: dict[str, float]
    overhead_ms: float
    ms_per_gflop: float
    unit_scale: dict[str, list[list[float]]]
    unit_curves: dict[str, list[list[float]]]
    calibration: dict[str, Any]
    metrics: dict[str, Any]
    fit_keys: list[str]
    blocks: list[str]
    rest: dict[str, dict[str, float]]

    def replace(self, **changes: Any) -> Learned:
        """A copy with ``changes``: the one way a step of fitting or calibration moves on."""
        return dataclasses.replace(self, **changes)

