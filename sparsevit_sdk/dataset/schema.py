"""The profile row contract shared by the profiler (writer) and predictors (reader).

One row per measurement.  A *layer unit* is the smallest piece timed in isolation; a
whole model is the sum of its units plus a per-device overhead:

- ``patch_embed``: conv + norm on the image (``in_h, in_w`` = image pixels)
- ``patch_merge``: 2x2 merge at the start of stages 2..4 (``in_h, in_w`` = input tokens)
- ``score``: window scoring + top-k of one stage (only runs when a block of it prunes)
- ``block_pair``: two blocks (W-MSA + SW-MSA) at one sparsity, gather/scatter included
- ``norm``: final LayerNorm
- ``model``: the whole forward at a config (``config`` holds the ratios as JSON); these
  rows judge predictors and are never mixed into layer fitting.
- ``whole``: a user's whole model (backbone, heads, decoder) called as the user calls it, at
  sparsity 0, timed in the same rounds as the ``model`` rows (``model`` holds its key, ``index``
  the backbone forwards per call): what it costs beyond its backbone, the *rest*, is
  ``whole - index x`` the dense ``model`` row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._documents import DocumentKind
from ..arch import DTYPE_BYTES
from ..runtimes import RUNTIMES

HOUR_MS = 3.6e6  # no latency a predictor gives, or a file holds, reaches an hour
DTYPE_NAMES = tuple(DTYPE_BYTES)  # what a unit was timed in
LAYER_KINDS = ("block_pair", "patch_embed", "patch_merge", "score", "norm", "model", "whole")
FORWARD_KINDS = ("model", "whole")  # rows that time a whole forward: never fitted as units

# column → pandas dtype
COLUMNS: dict[str, str] = {
    "hw": "string",  # user's target name, e.g. "cpu", "jetson-orin"
    "fingerprint_id": "string",  # short hash of the device fingerprint (JSON sidecar)
    "device": "string",  # torch device string, e.g. "cpu", "cuda:0"
    "model": "string",  # model name (registry) or "custom"
    "signature": "string",  # SparseSwin.signature
    "layer": "string",  # one of LAYER_KINDS
    "stage": "int64",  # 0-based stage; -1 for model rows
    "index": "int64",  # pair index within the stage for block_pair, else 0
    "dim": "int64",  # channels entering the unit
    "out_dim": "int64",  # channels leaving the unit
    "heads": "int64",
    "window": "int64",
    "mlp_ratio": "float64",
    "in_h": "int64",  # unit input height (tokens; pixels for patch_embed and model)
    "in_w": "int64",
    "img_h": "int64",  # image resolution the unit was measured under
    "img_w": "int64",
    "batch": "int64",
    "dtype": "string",  # "fp32", "fp16", "bf16"
    "windows_total": "int64",  # windows per image in the unit's stage (0 where n/a)
    "windows_kept": "int64",  # windows kept per image by the unit (0 where n/a)
    "sparsity": "float64",  # unit sparsity; mean knob sparsity for model rows
    "config": "string",  # JSON list of knob ratios for model rows, "" otherwise
    "runtime": "string",  # what ran it: "eager", "compiled", "onnxruntime" (units are always eager)
    "latency_ms": "float64",  # median
    "p10_ms": "float64",
    "p90_ms": "float64",
    "min_ms": "float64",
    "repeats": "int64",
    "threads": "int64",
    "torch_version": "string",
    "sdk_version": "string",
    "timestamp": "string",  # ISO 8601, UTC
}

# measured times, positive finite milliseconds in every row, by the LatencyStats field they hold:
# rows name the median ``latency_ms`` (their headline column), LatencyStats ``median_ms``
PROFILE_COLUMNS = {"median_ms": "latency_ms", "p10_ms": "p10_ms", "p90_ms": "p90_ms", "min_ms": "min_ms"}
LATENCY_COLUMNS = tuple(PROFILE_COLUMNS.values())


def stable_statistic(*devices: object, profile: bool = False) -> str:
    """The statistic to fit and validate on: ``p10_ms`` when every device (``"cpu"``,
    ``"cuda:0"``, a torch.device) is a CPU, since medians drift run to run on a shared machine;
    the median on a GPU.  The LatencyStats field, or with ``profile=True`` its profile column."""
    name = "p10_ms" if all(str(d).split(":")[0] == "cpu" for d in devices) else "median_ms"
    return PROFILE_COLUMNS[name] if profile else name

# what identifies a measurement: re-running a sweep replaces, never duplicates, these.  The model is part of
# it: two whole models around one backbone (a classifier, a segmenter) share every other field of their
# ``whole`` rows, and one must never replace the other's.
KEY = ("fingerprint_id", "model", "signature", "layer", "stage", "index", "img_h", "img_w",
       "batch", "dtype", "sparsity", "config", "runtime")
# columns added since the first datasets, with the value every older row had
ADDED = {"runtime": "eager"}
# a profile file: its header lives in the parquet metadata; files written before it had one are schema 1 too
PROFILE = DocumentKind("sparsevit-profile", 1, what="profile dataset", implicit=1,
                       fix="re-profile with `sparsevit-profile` into a new folder")


def latest_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with one row per KEY, the last one given (so later measurements win), sorted by KEY."""
    return rows.drop_duplicates(list(KEY), keep="last").sort_values(list(KEY), ignore_index=True)


def empty_frame() -> pd.DataFrame:
    """A frame of no rows with the columns and dtypes of :data:`COLUMNS`."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})


class SchemaError(ValueError):
    """A profile file that does not follow :data:`COLUMNS`."""


def _check_numbers(df: pd.DataFrame, source: str) -> None:
    """Numbers mean what they say before any cast: a boolean is no latency or count, and an
    integer column (a batch, a window count) holds whole numbers, not 1.7 truncated to 1."""
    for column, kind in COLUMNS.items():
        if kind not in ("int64", "float64"):
            continue
        values = df[column]
        if pd.api.types.is_bool_dtype(values):
            flags = np.ones(len(values), bool)
        elif values.dtype == object:  # mixed values: look at each (a numeric column holds no booleans)
            flags = values.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(bool)
        else:
            continue
        if flags.any():
            raise SchemaError(f"{source}: column {column!r} row {int(np.flatnonzero(flags)[0])} holds a true/false "
                              "value, expected a number; the file is damaged or was edited: restore it, or re-profile "
                              "with `sparsevit-profile`")
        if kind == "int64" and not pd.api.types.is_integer_dtype(values):
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(float)  # not a number: NaN, refused below
            fraction = ~np.isfinite(numbers) | (numbers != np.round(numbers))
            if fraction.any():
                first = int(np.flatnonzero(fraction)[0])
                raise SchemaError(f"{source}: column {column!r} row {first} is {numbers[first]}, expected a whole "
                                  "number; the file is damaged or was edited")


def validate_frame(df: pd.DataFrame, source: str = "dataset") -> pd.DataFrame:
    """Check columns, kinds and values; return the frame with canonical dtypes (and the
    :data:`ADDED` columns filled in for files written before them)."""
    df = df.assign(**{c: v for c, v in ADDED.items() if c not in df.columns})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{source}: missing columns {missing}; is this a sparsevit profile? "
            "Re-create it with `sparsevit-profile`"
        )
    _check_numbers(df, source)
    try:
        df = df[list(COLUMNS)].astype(COLUMNS)
    except (ValueError, TypeError) as err:
        raise SchemaError(f"{source}: a column has values of the wrong type ({err})") from err
    for column, known in (("dtype", DTYPE_NAMES),):
        bad = sorted(set(df[column]) - set(known))
        if bad:
            raise SchemaError(f"{source}: unknown {column} values {bad}; expected {list(known)}")
    over = df["windows_kept"] > df["windows_total"]
    if over.any():
        first = int(over.to_numpy().nonzero()[0][0])
        raise SchemaError(f"{source}: row {first} keeps {df['windows_kept'].iloc[first]} of "
                          f"{df['windows_total'].iloc[first]} windows (column 'windows_kept'): a unit cannot keep "
                          "more windows than it has; the file is damaged or was edited")
    for column, known in (("layer", LAYER_KINDS), ("runtime", RUNTIMES)):
        bad = sorted(set(df[column]) - set(known))
        if bad:
            raise SchemaError(f"{source}: unknown {column} values {bad}; expected {list(known)}")
    for column in LATENCY_COLUMNS:
        values = df[column].to_numpy(float)
        bad = ~(np.isfinite(values) & (values > 0))  # NaN compares false: test for the good ones
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise SchemaError(f"{source}: column {column!r} has {int(bad.sum())} of {len(df)} rows that are not a "
                              f"positive finite latency (row {first}: {values[first]}); the file is damaged or was "
                              "edited: restore it, or re-profile with `sparsevit-profile`")
    return df
