"""Profile datasets: where the profiler (the builder) and the predictors (the readers) meet.

``schema`` is the row contract (columns, the measurement KEY, "latest row per key wins");
``files`` the layout on disk, locked atomic merges and loading; ``fingerprint`` the device
identity rows are keyed by and how two devices compare; ``merge`` joins datasets and
picks one device's rows.  Nothing here measures: probing a device is the profiler's job.
"""

from .files import check_hw, claim_folder, dataset_path, load_profiles, merge_rows, read_fingerprint, read_frame
from .fingerprint import describe_mismatch, fingerprint_id, identity, load_fingerprint, same_device, stored_fingerprints
from .merge import merge_profiles, select_device
from .schema import COLUMNS, KEY, LATENCY_COLUMNS, LAYER_KINDS, SchemaError, empty_frame, latest_rows, validate_frame

__all__ = [
    "COLUMNS", "KEY", "LATENCY_COLUMNS", "LAYER_KINDS", "SchemaError", "check_hw", "claim_folder", "dataset_path",
    "describe_mismatch", "empty_frame", "fingerprint_id", "identity", "latest_rows", "load_fingerprint",
    "load_profiles", "merge_profiles", "merge_rows", "read_fingerprint", "read_frame", "same_device",
    "select_device", "stored_fingerprints", "validate_frame",
]
