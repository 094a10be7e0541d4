"""Profile datasets on disk: layout, atomic writes, merging, loading.

Layout (one folder per target; ``out`` is the root, e.g. ``profiles/``; see :func:`dataset_path`)::

    <out>/<hw>/fingerprint.json      device fingerprint (see fingerprint.py), one per folder
    <out>/<hw>/<model>.parquet       rows of schema.COLUMNS for one model, sorted by KEY

A folder holds measurements of one device only: writing rows of another
``fingerprint_id`` into it is refused, so mixing needs a different ``hw`` name.  Every
write is atomic (``_atomic.atomic_write``), so an interrupted run or a full disk leaves the
previous file intact.  Writing merges with what is there: a row whose KEY is already
present replaces the old one (:func:`~.schema.latest_rows`).  The read-merge-write holds the
file's lock (``_atomic.file_lock``: one per file, links resolved), so processes writing one
dataset at once, by any path, never lose each other's rows.

Read everything back with :func:`load_profiles`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .._atomic import atomic_write, file_lock, write_json
from .fingerprint import describe_mismatch, load_fingerprint, sidecar
from .schema import PROFILE, SchemaError, latest_rows, validate_frame

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
LOCK_TIMEOUT_S = 300.0  # a merge takes a second or two; longer means a writer is stuck, not busy
_UNREADABLE = (OSError, pa.ArrowException, ValueError)
_HEADER = b"sparsevit"  # the parquet metadata key of a profile's header


def check_hw(hw: str) -> str:
    """``hw`` names a folder: letters, digits, ``.``, ``_`` and ``-`` only."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", hw or ""):
        raise ValueError(f"hw name {hw!r} must be letters, digits, '.', '_' or '-' (e.g. 'jetson-orin')")
    return hw


def dataset_path(out: str | os.PathLike, hw: str, name: str) -> Path:
    """Where the rows of model ``name`` measured on ``hw`` are kept (``<out>/<hw>/<name>.parquet``)."""
    return Path(out) / hw / f"{name}.parquet"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the cross-process lock of the dataset ``path`` (the OS frees it if its holder dies)."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(path, timeout=LOCK_TIMEOUT_S))
        except TimeoutError as err:
            raise TimeoutError(f"{path}: another process has been writing it for over {LOCK_TIMEOUT_S:.0f} s "
                               f"({err}); try again once it has finished") from err
        yield


def read_frame(path: str | os.PathLike) -> pd.DataFrame:
    """One parquet file, validated; unreadable or foreign files raise SchemaError naming the file."""
    path = Path(path)
    try:
        df = _read_parquet(path)
    except SchemaError:  # a read straddling a writer's rename fails on a good file: retry once none is busy
        try:
            with _locked(path):
                df = _read_parquet(path)
        except OSError:  # no lock file can be made here (a read-only folder), so no writer either
            df = _read_parquet(path)
    return validate_frame(df, str(path))


def _read_parquet(path: Path) -> pd.DataFrame:
    """The rows of the parquet file at ``path`` in this release's schema, read while no writer is replacing it."""
    try:
        table = pq.read_table(path)
    except _UNREADABLE as err:
        raise SchemaError(f"{path}: not a readable parquet file ({err}), with no writer busy: it is damaged; "
                          "move it aside and re-run `sparsevit-profile`") from err
    header = json.loads((table.schema.metadata or {}).get(_HEADER, b"{}"))
    return PROFILE.upgrade(table.to_pandas(), str(path), meta=header)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as a parquet file whose metadata holds the profile header (kind, schema, writer)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), _HEADER: json.dumps(PROFILE.header()).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path)


def merge_rows(path: str | os.PathLike, rows: pd.DataFrame) -> pd.DataFrame:
    """Merge ``rows`` into the dataset at ``path`` (new rows win on equal KEY); returns the merged frame.

    Read, merge and write happen under the dataset's lock: concurrent writers take turns.
    """
    path = Path(path)
    rows = validate_frame(rows, "new rows")
    path.parent.mkdir(parents=True, exist_ok=True)  # the lock file lives there
    with _locked(path):
        if path.exists():
            old = validate_frame(_read_parquet(path), str(path))
            foreign = sorted(set(old["fingerprint_id"]) - set(rows["fingerprint_id"]))
            if foreign and len(rows):
                raise ValueError(f"{path} holds rows of device {foreign}, not {rows['fingerprint_id'].iloc[0]}; "
                                 "write to another hw folder")
            rows = pd.concat([old, rows], ignore_index=True) if len(old) else rows
        merged = latest_rows(rows)
        atomic_write(path, lambda tmp: _write_parquet(merged, tmp))
    return merged


def read_fingerprint(folder: str | os.PathLike) -> dict | None:
    """The fingerprint sidecar of a dataset folder, or None if there is none; one that is not
    JSON, not an object, or whose id is not the hash of its content is refused."""
    path = Path(folder) / FINGERPRINT_FILE
    if not path.exists():
        return None
    return load_fingerprint(path)


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
    write_json(folder / FINGERPRINT_FILE, sidecar(fp), indent=2)


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
        if fp is None:
            continue
        beside = {f.name: frame for f, frame in zip(files, frames) if f.parent == folder}
        measured = sorted({i for frame in beside.values() for i in frame["fingerprint_id"].unique()})
        if measured and measured != [fp["fingerprint_id"]]:  # else fit would drop the device description
            raise SchemaError(f"{folder / FINGERPRINT_FILE}: field 'fingerprint_id' is {fp['fingerprint_id']!r}, but "
                              f"the rows of {', '.join(beside)} were measured on {measured}: the sidecar was replaced "
                              "or edited. Restore the fingerprint.json written with these rows, or re-profile into a "
                              "new folder")
        fingerprints[fp["fingerprint_id"]] = fp
    df.attrs["fingerprints"] = fingerprints
    return df

