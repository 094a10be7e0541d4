"""Latency profiling, the builder: timing, device probing, the sweep.

The dataset it writes (schema, files, fingerprint identity) is :mod:`sparsevit_sdk.dataset`;
its names below are re-exported from there.
"""

from ..dataset.files import dataset_path, load_profiles, read_fingerprint
from ..dataset.schema import COLUMNS, KEY, LAYER_KINDS, SchemaError, validate_frame
from .fingerprint import device_fingerprint
from .sweep import SweepSettings, parse_resolution, profile_model
from .timing import LatencyStats, measure_latency, time_callable

__all__ = [
    "COLUMNS", "KEY", "LAYER_KINDS", "LatencyStats", "SchemaError", "SweepSettings", "dataset_path",
    "device_fingerprint", "load_profiles", "measure_latency", "parse_resolution", "profile_model",
    "read_fingerprint", "time_callable", "validate_frame",
]
