"""Profile datasets on disk: layout, atomic writes, merging, loading.

Layout (one folder per target; ``out`` is the root, e.g. ``profiles/``)::

    <out>/<hw>/fingerprint.json      device fingerprint (see fingerprint.py), one per folder
    <out>/<hw>/<model>.parquet       rows of schema.COLUMNS for one model, sorted by KEY

A folder holds measurements of one device only: writing rows of another
``fingerprint_id`` into it is refused, so mixing needs a different ``hw`` name.  Every
write goes to a temporary file in the same folder that is then renamed over the target,
so an interrupted run or a full disk leaves the previous file intact.  Writing merges
with what is there: a row whose KEY is already present replaces the old one.

Read everything back with :func:`load_profiles`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa

from .fingerprint import describe_mismatch
from .schema import COLUMNS, KEY, SchemaError, validate_frame

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write(tmp)`` on a temporary sibling of ``path``, flush it to disk, rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, f"could not write {path} ({err.strerror or err}); the previous file, "
                                 "if any, is unchanged") from err
    except BaseException:  # KeyboardInterrupt: leave no half file behind
        tmp.unlink(missing_ok=True)
        raise


def write_frame(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Validate ``df`` and write it as parquet, atomically."""
    path = Path(path)
    df = validate_frame(df, str(path))
    _atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def read_frame(path: str | os.PathLike) -> pd.DataFrame:
    """One parquet file, validated; unreadable or foreign files raise SchemaError naming the file."""
    try:
        df = pd.read_parquet(path)
    except (OSError, pa.ArrowException, ValueError) as err:
        raise SchemaError(f"{path}: not a readable parquet file ({err}); delete it and re-run "
                          "`sparsevit-profile`") from err
    return validate_frame(df, str(path))


def merge_rows(path: str | os.PathLike, rows: pd.DataFrame) -> pd.DataFrame:
    """Merge ``rows`` into the dataset at ``path`` (new rows win on equal KEY); returns the merged frame."""
    path = Path(path)
    rows = validate_frame(rows, "new rows")
    if path.exists():
        old = read_frame(path)
        foreign = sorted(set(old["fingerprint_id"]) - set(rows["fingerprint_id"]))
        if foreign and len(rows):
            raise ValueError(f"{path} holds rows of device {foreign}, not {rows['fingerprint_id'].iloc[0]}; "
                             "write to another hw folder")
        rows = pd.concat([old, rows], ignore_index=True) if len(old) else rows
    merged = rows.drop_duplicates(list(KEY), keep="last").sort_values(list(KEY), ignore_index=True)
    write_frame(merged, path)
    return merged


def read_fingerprint(folder: str | os.PathLike) -> dict | None:
    """The fingerprint sidecar of a dataset folder, or None if there is none."""
    path = Path(folder) / FINGERPRINT_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SchemaError(f"{path}: unreadable fingerprint ({err}); delete it and re-run `sparsevit-profile`") from err


def claim_folder(folder: str | os.PathLike, fingerprint: dict) -> None:
    """Make ``folder`` hold data of ``fingerprint``'s device, or refuse if it holds another's.

    The sidecar is rewritten with the current details (versions, clocks) and keeps an
    earlier ``note`` when the new one is empty.
    """
    folder = Path(folder)
    old = read_fingerprint(folder)
    if old is not None and old.get("fingerprint_id") != fingerprint["fingerprint_id"]:
        raise ValueError(
            f"{folder} holds a dataset from another device or setting (fingerprint "
            f"{old.get('fingerprint_id')}, {describe_mismatch(old, fingerprint)}); refusing to mix them. "
            f"Pass a different --hw (e.g. --hw {fingerprint['hw']}-2) or another --out folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    fp = {**fingerprint, "note": fingerprint.get("note") or (old or {}).get("note", "")}
    text = json.dumps(fp, indent=2) + "\n"
    _atomic_write(folder / FINGERPRINT_FILE, lambda tmp: tmp.write_text(text))


def load_profiles(path: str | os.PathLike) -> pd.DataFrame:
    """All profile rows under ``path`` (a ``.parquet`` file, or a folder searched recursively).

    The frame is validated against schema.COLUMNS; ``df.attrs["fingerprints"]`` maps each
    ``fingerprint_id`` to its sidecar (where one was found).
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no profile datasets (*.parquet) under {path}; create one with `sparsevit-profile`")
    frames = [read_frame(f) for f in files]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    fingerprints = {}
    for folder in sorted({f.parent for f in files}):
        fp = read_fingerprint(folder)
        if fp is not None:
            fingerprints[fp["fingerprint_id"]] = fp
    df.attrs["fingerprints"] = fingerprints
    return df


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})
