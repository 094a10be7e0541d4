"""profiler/sweep.py: what a sweep measures and writes, atomic writes, resume and merge."""

from __future__ import annotations

import errno
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from sparsevit_sdk import SparseSwin, build_model, search_space
from sparsevit_sdk.arch import kept_windows
from sparsevit_sdk.dataset import (
    COLUMNS,
    KEY,
    LAYER_KINDS,
    SchemaError,
    dataset_path,
    load_profiles,
    read_fingerprint,
    validate_frame,
)
from sparsevit_sdk.dataset.fingerprint import fingerprint_id
from sparsevit_sdk.profiler import SweepSettings, device_fingerprint, profile_model

FAST = SweepSettings(warmup=1, repeats=2, model_repeats=2, random_configs=3)


GRID = (0.0, 0.5)


def _profile(out, **kwargs) -> pd.DataFrame:
    kwargs = {"resolutions": ["64x64"], "settings": FAST, "grid": GRID, "progress": False, **kwargs}
    return profile_model("swin_micro", out=out, **kwargs)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A full-grid micro dataset on disk and the rows the sweep returned."""
    out = tmp_path_factory.mktemp("profiles")
    rows = profile_model("swin_micro", resolutions=["64x64"], batches=[1, 2], settings=FAST, out=out,
                         progress=False)
    return out, rows


def test_dataset_follows_schema(dataset):
    out, rows = dataset
    path = dataset_path(out, "cpu", "swin_micro")
    raw = pd.read_parquet(path)  # plain pandas reads it
    assert list(raw.columns) == list(COLUMNS)
    df = load_profiles(out)
    assert len(df) == len(rows) == len(raw)
    assert not df.duplicated(list(KEY)).any()
    assert set(df["layer"]) == set(LAYER_KINDS) - {"whole"}  # a built-in backbone: no whole model around it
    assert (df["min_ms"] <= df["p10_ms"]).all() and (df["p10_ms"] <= df["latency_ms"]).all()
    assert (df["latency_ms"] <= df["p90_ms"]).all()
    assert (df["threads"] == 1).all() and (df["hw"] == "cpu").all()
    assert rows.attrs["fingerprints"] == df.attrs["fingerprints"]  # the returned rows know their device too


def test_units_cover_every_stage_and_sparsity(dataset):
    _, df = dataset
    model, grid = build_model("swin_micro"), search_space(build_model("swin_micro")).grid
    n_stages = len(model.depths)
    for batch in (1, 2):
        rows = df[df["batch"] == batch]
        pairs = rows[rows["layer"] == "block_pair"]
        assert len(pairs) == n_stages * len(grid)  # one pair per stage: all pairs of a stage share a shape
        assert (pairs["index"] == 0).all()
        assert list(pairs["windows_kept"]) == [kept_windows(t, s) for t, s in zip(pairs.windows_total, pairs.sparsity)]
        assert len(rows[rows["layer"] == "score"]) == n_stages * (len(grid) - 1)  # nothing is scored at 0
        counts = rows["layer"].value_counts()
        assert counts["patch_embed"] == 1 and counts["patch_merge"] == n_stages - 1 and counts["norm"] == 1


def test_model_rows_hold_uniform_and_random_configs(dataset):
    _, df = dataset
    space = search_space(build_model("swin_micro"))
    models = df[(df["layer"] == "model") & (df["batch"] == 1)]
    configs = [tuple(json.loads(c)) for c in models["config"]]
    assert len(set(configs)) == len(space.grid) + FAST.random_configs
    assert {space.uniform(s).ratios for s in space.grid} <= set(configs)
    for cfg, s in zip(configs, models["sparsity"]):
        space.config(cfg)  # valid, monotonic within stages
        assert s == pytest.approx(sum(cfg) / len(cfg))


def test_sampling_is_deterministic_under_seed():
    kwargs = dict(resolutions=[64], settings=FAST, grid=GRID, progress=False)
    a = profile_model("swin_micro", seed=3, **kwargs)
    b = profile_model("swin_micro", seed=3, **kwargs)
    assert list(a["config"]) == list(b["config"])


def test_schema_rejects_foreign_frames(dataset):
    _, rows = dataset
    with pytest.raises(SchemaError, match="missing columns"):
        validate_frame(pd.DataFrame({"a": [1]}))
    with pytest.raises(SchemaError, match="unknown layer values"):
        validate_frame(rows.assign(layer="conv"))


def _tmp_files(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]  # the dataset's .lock stays, as a lock does


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch, failure):
    _profile(tmp_path, grid=(0.0,))
    path = dataset_path(tmp_path, "cpu", "swin_micro")
    before = path.read_bytes()

    def broken(table, target, **kwargs):
        with open(target, "wb") as f:
            f.write(b"PAR1 half a file")
        raise failure

    monkeypatch.setattr(pq, "write_table", broken)  # the dataset's one parquet writer
    with pytest.raises(type(failure)) as info:
        _profile(tmp_path, grid=(0.5,))
    if isinstance(failure, OSError):
        assert "No space left" in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == before
    assert _tmp_files(path.parent) == []


class _Interrupted(SparseSwin):
    """Stands for a user pressing Ctrl-C once the sweep reaches whole-model rows."""

    def forward(self, x):
        raise KeyboardInterrupt


def test_interrupted_sweep_keeps_measured_rows_and_resume_finishes(tmp_path):
    model = _Interrupted(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
    with pytest.raises(KeyboardInterrupt):
        profile_model(model, name="micro", out=tmp_path, resolutions=[64], settings=FAST, grid=GRID,
                      progress=False)
    path = dataset_path(tmp_path, "cpu", "micro")
    saved = load_profiles(path)
    assert len(saved) > 0 and "model" not in set(saved["layer"])
    assert _tmp_files(path.parent) == []

    working = SparseSwin(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
    rows = profile_model(working, name="micro", out=tmp_path, resolutions=[64], settings=FAST, grid=GRID,
                         progress=False, resume=True)
    assert set(rows["layer"]) == {"model"}  # only what was missing
    assert len(load_profiles(path)) == len(saved) + len(rows)


def test_rerun_merges_without_duplicates_and_resume_skips(tmp_path):
    first = _profile(tmp_path)
    path = dataset_path(tmp_path, "cpu", "swin_micro")
    again = _profile(tmp_path)
    merged = load_profiles(path)
    assert len(again) == len(first) == len(merged)  # re-measured rows replaced the old ones
    assert set(merged["timestamp"]) == set(again["timestamp"])
    assert len(_profile(tmp_path, resume=True)) == 0
    # more repeats than stored: resume re-measures
    more = SweepSettings(warmup=1, repeats=3, model_repeats=2, random_configs=3)
    redo = _profile(tmp_path, resume=True, settings=more)
    assert set(redo["layer"]) == set(LAYER_KINDS) - {"model", "whole"}
    # a wider grid: resume measures only the units at the new sparsity
    wider = _profile(tmp_path, resume=True, settings=more, grid=(0.0, 0.5, 0.8))
    units = wider[wider["layer"] != "model"]
    assert set(units["layer"]) == {"block_pair", "score"} and set(units["sparsity"]) == {0.8}
    assert not load_profiles(path).duplicated(list(KEY)).any()


def test_rounds_keep_the_quietest_pass(tmp_path):
    twice = SweepSettings(warmup=1, repeats=2, model_repeats=2, random_configs=1, rounds=2)
    rows = _profile(tmp_path, settings=twice)
    assert (rows["repeats"] == 4).all()  # the timed calls of both rounds
    assert not rows.duplicated(list(KEY)).any() and (rows["p10_ms"] <= rows["latency_ms"]).all()
    assert len(_profile(tmp_path, settings=twice, resume=True)) == 0
    thrice = SweepSettings(warmup=1, repeats=2, model_repeats=2, random_configs=1, rounds=3)
    assert len(_profile(tmp_path, settings=thrice, resume=True)) == len(rows)


def test_corrupt_file_is_named(tmp_path):
    folder = tmp_path / "cpu"
    folder.mkdir()
    bad = folder / "swin_micro.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(SchemaError, match="swin_micro.parquet"):
        load_profiles(tmp_path)
    with pytest.raises(SchemaError, match="swin_micro.parquet"):
        _profile(tmp_path)


def test_empty_folder_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="sparsevit-profile"):
        load_profiles(tmp_path)


def test_sidecar_is_written_and_rows_point_to_it(dataset):
    out, rows = dataset
    fp = read_fingerprint(out / "cpu")
    assert fp["hw"] == "cpu" and fp["threads"] == 1
    assert set(rows["fingerprint_id"]) == {fp["fingerprint_id"]}
    assert load_profiles(out).attrs["fingerprints"][fp["fingerprint_id"]]["name"] == fp["name"]


def test_other_fingerprint_is_refused_unless_hw_differs(tmp_path):
    """A folder copied from another machine (its sidecar says so) is never mixed with this one's rows."""
    folder = tmp_path / "cpu"
    folder.mkdir()
    foreign = {**device_fingerprint("cpu", threads=1), "name": "Other CPU 9000"}
    foreign["fingerprint_id"] = fingerprint_id(foreign)  # a real sidecar: its id hashes its content
    (folder / "fingerprint.json").write_text(json.dumps(foreign))
    with pytest.raises(ValueError, match="Other CPU 9000.*refusing to mix.*--hw"):
        _profile(tmp_path, grid=(0.0,))
    assert list(folder.iterdir()) == [folder / "fingerprint.json"]
    rows = _profile(tmp_path, grid=(0.0,), hw="cpu-b")
    assert (rows["hw"] == "cpu-b").all()
    assert read_fingerprint(tmp_path / "cpu-b")["fingerprint_id"] == rows["fingerprint_id"].iloc[0]
    assert read_fingerprint(folder)["name"] == "Other CPU 9000"


def test_cpu_clock_sweep_is_its_own_fingerprint(tmp_path):
    rows = _profile(tmp_path, grid=(0.0,), clock="cpu")
    fp = read_fingerprint(tmp_path / "cpu")
    assert fp["clock"] == "cpu" and (rows["p10_ms"] > 0).all()
    assert fp["fingerprint_id"] != device_fingerprint("cpu", threads=1)["fingerprint_id"]  # wall clock
    with pytest.raises(ValueError, match="refusing to mix"):
        _profile(tmp_path, grid=(0.0,))
    with pytest.raises(ValueError, match="threads=1"):
        _profile(tmp_path, grid=(0.0,), clock="cpu", threads=2)


def test_api_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="known models"):
        profile_model("swin_xl", out=tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        _profile(tmp_path, dtype="fp64")
    with pytest.raises(TypeError, match="sparsify"):
        profile_model(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="even"):
        profile_model(SparseSwin(embed_dim=16, depths=(2, 3), num_heads=(1, 2)))
    with pytest.raises(ValueError, match="repeats"):
        SweepSettings(repeats=0)
    assert not (tmp_path / "cpu").exists()  # nothing was written


def test_a_damaged_dataset_is_found_before_profiling(tmp_path, monkeypatch):
    from sparsevit_sdk.profiler import profile_model, sweep

    path = dataset_path(tmp_path, "cpu", "swin_micro")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # a 0-byte parquet left by a crash of an old version
    monkeypatch.setattr(sweep, "_run", lambda *a, **k: pytest.fail("measured before reading the dataset"))
    with pytest.raises(SchemaError, match="damaged"):
        profile_model("swin_micro", resolutions=["64x64"], hw="cpu", out=tmp_path, progress=False)
