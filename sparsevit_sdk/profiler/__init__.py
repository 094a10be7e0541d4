"""Latency profiling, the builder: timing, device probing, the sweep.

The dataset it writes (schema, files, fingerprint identity) is :mod:`sparsevit_sdk.dataset`;
``measure_latency`` and ``LatencyStats`` are :mod:`sparsevit_sdk`'s.
"""

from .fingerprint import device_fingerprint
from .sweep import SweepSettings, parse_resolution, profile_model
from .timing import time_callable

__all__ = [
    "SweepSettings", "device_fingerprint", "parse_resolution", "profile_model", "time_callable",
]
