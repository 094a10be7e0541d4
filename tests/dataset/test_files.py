"""dataset/files.py: concurrent writers merge under a lock; reads retry; damage is named."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sparsevit_sdk.dataset import COLUMNS, SchemaError
from sparsevit_sdk.dataset.files import merge_rows, read_frame

from ..test_atomic import _leftovers


def _rows(indices: range) -> pd.DataFrame:
    """Valid profile rows that differ only in their key's ``index``."""
    row = {c: "x" if t == "string" else 1 for c, t in COLUMNS.items()} | {"layer": "norm", "runtime": "eager",
                                                                         "dtype": "fp32"}
    return pd.DataFrame([{**row, "index": i} for i in indices])


def _merge_many(path: Path, writer: int, merges: int, go: multiprocessing.synchronize.Event) -> None:
    """One writer: ``merges`` merges of two new rows each, starting together with the other writer."""
    go.wait()
    for m in range(merges):
        first = writer * 10_000 + 2 * m
        merge_rows(path, _rows(range(first, first + 2)))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_two_processes_merging_one_dataset_lose_no_rows(tmp_path):
    """Two processes merge into one dataset at once (unlocked, about half the rows were lost) while this
    process reads it (unlocked, a read straddling a rename failed)."""
    path, merges = tmp_path / "cpu" / "swin_micro.parquet", 10
    fork = multiprocessing.get_context("fork")  # separate processes without importing torch again
    go = fork.Event()
    writers = [fork.Process(target=_merge_many, args=(path, w, merges, go)) for w in (1, 2)]
    for p in writers:
        p.start()
    try:
        go.set()
        reads = 0
        while any(p.is_alive() for p in writers):
            if path.exists():
                read_frame(path)
                reads += 1
            time.sleep(0.01)
    finally:
        for p in writers:
            p.join(timeout=60)
    assert [p.exitcode for p in writers] == [0, 0]
    expected = {w * 10_000 + i for w in (1, 2) for i in range(2 * merges)}
    assert set(read_frame(path)["index"]) == expected
    assert reads > 0 and _leftovers(path.parent) == []


def test_a_read_that_straddles_a_rename_is_retried(tmp_path, monkeypatch):
    """The first read fails as a read racing a writer's rename can; the retry reads the good file."""
    path = tmp_path / "rows.parquet"
    real = pq.read_table
    _rows(range(1)).to_parquet(path, index=False)
    calls = []

    def racing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise pa.ArrowInvalid("Parquet magic bytes not found in footer")
        return real(*args, **kwargs)

    monkeypatch.setattr(pq, "read_table", racing)
    assert len(read_frame(path)) == 1 and len(calls) == 2


def test_a_damaged_dataset_is_called_damaged_not_deleted(tmp_path):
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"PAR1 half a file")
    with pytest.raises(SchemaError, match="rows.parquet.*damaged; move it aside") as info:
        read_frame(path)
    assert "delete" not in str(info.value)


def test_two_whole_models_around_one_backbone_keep_both_rows(tmp_path):
    """Their ``whole`` rows differ only in the model: without it in the key, the second replaced the first."""
    path = tmp_path / "cpu" / "rows.parquet"
    for model in ("Classifier-0a1b2c3d4e5f", "Segmenter-0a1b2c3d4e5f"):
        merge_rows(path, _rows(range(1)).assign(layer="whole", model=model))
    assert sorted(read_frame(path)["model"]) == ["Classifier-0a1b2c3d4e5f", "Segmenter-0a1b2c3d4e5f"]
    merge_rows(path, _rows(range(1)).assign(layer="whole", model="Segmenter-0a1b2c3d4e5f", latency_ms=2.0))
    assert len(read_frame(path)) == 2  # the same model measured again still replaces its row
