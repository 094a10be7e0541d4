"""Latency profiling: timing, device fingerprints, the sweep, and the dataset it writes."""

from .dataset import load_profiles, read_fingerprint
from .fingerprint import device_fingerprint
from .schema import COLUMNS, KEY, LAYER_KINDS, SchemaError, validate_frame
from .sweep import SweepSettings, dataset_path, parse_resolution, profile_model
from .timing import LatencyStats, measure_latency, time_callable

__all__ = [
    "COLUMNS", "KEY", "LAYER_KINDS", "LatencyStats", "SchemaError", "SweepSettings", "dataset_path",
    "device_fingerprint", "load_profiles", "measure_latency", "parse_resolution", "profile_model",
    "read_fingerprint", "time_callable", "validate_frame",
]
