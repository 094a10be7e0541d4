"""Latency profiling, the builder: timing, device probing, the sweep.

``measure_latency`` (a model) and ``time_callable`` (any callable) time things, inside
``num_threads(n)`` to pin torch's thread count as a measurement records it; ``reference_ms``
times a fixed workload that tells whether this machine's speed changed since a calibration.
``ModelForward`` is a user's whole model seen as backbone calls plus the rest (what a search
prices), ``backbone_calls`` times its backbone at the shapes it is called with and
``format_shapes`` writes those shapes as the results print them.
The dataset the profiler writes (schema, files, fingerprint identity) is :mod:`sparsevit_sdk.dataset`.
"""

from .fingerprint import device_fingerprint
from .forward import ModelForward, backbone_calls, format_shapes
from .reference import reference_ms
from .sweep import SweepSettings, parse_resolution, profile_model
from .timing import LatencyStats, measure_latency, num_threads, time_callable

__all__ = [
    "LatencyStats", "ModelForward", "SweepSettings", "backbone_calls", "device_fingerprint", "format_shapes",
    "measure_latency", "num_threads", "parse_resolution", "profile_model", "reference_ms", "time_callable",
]
