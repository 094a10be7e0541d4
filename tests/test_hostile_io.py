"""Nothing lost: concurrent dataset writers, atomic saves, output paths checked before the work.

Each test would fail on the behaviour issue 13 found: rows lost by a concurrent writer, a
save that truncates the previous file when the write fails, a command that refuses its
output path only after hours of work.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.synchronize
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from sparsevit_sdk import SearchSpace, build_model
from sparsevit_sdk._atomic import atomic_write, check_writable, write_figure
from sparsevit_sdk.accuracy import default_proxy
from sparsevit_sdk.cli import fit as fit_cli
from sparsevit_sdk.cli import profile as profile_cli
from sparsevit_sdk.cli import search as search_cli
from sparsevit_sdk.dataset.files import merge_rows, read_frame
from sparsevit_sdk.predictor import LatencyPredictor
from sparsevit_sdk.profiler import COLUMNS, SchemaError, dataset_path
from sparsevit_sdk.search import SearchResult, SearchSession
from sparsevit_sdk.search.checkpoint import read_checkpoint, write_checkpoint

posix_only = pytest.mark.skipif(os.name != "posix", reason="file-size limits are POSIX")


def _leftovers(folder: Path) -> list[str]:
    """Temporary files a write left behind."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def _rows(indices: range) -> pd.DataFrame:
    """Valid profile rows that differ only in their key's ``index``."""
    row = {c: "x" if t == "string" else 1 for c, t in COLUMNS.items()} | {"layer": "norm", "runtime": "eager",
                                                                         "dtype": "fp32"}
    return pd.DataFrame([{**row, "index": i} for i in indices])


# --- two processes merging into one dataset ------------------------------------------------------

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
    real = pd.read_parquet
    _rows(range(1)).to_parquet(path, index=False)
    calls = []

    def racing(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise pa.ArrowInvalid("Parquet magic bytes not found in footer")
        return real(*args, **kwargs)

    monkeypatch.setattr(pd, "read_parquet", racing)
    assert len(read_frame(path)) == 1 and len(calls) == 2


def test_a_damaged_dataset_is_called_damaged_not_deleted(tmp_path):
    path = tmp_path / "rows.parquet"
    path.write_bytes(b"PAR1 half a file")
    with pytest.raises(SchemaError, match="rows.parquet.*damaged; move it aside") as info:
        read_frame(path)
    assert "delete" not in str(info.value)


# --- failed and interrupted saves keep the previous file -----------------------------------------

@contextlib.contextmanager
def _file_size_limit(nbytes: int) -> Iterator[None]:
    """``ulimit -f``: writes past ``nbytes`` fail with EFBIG (Python ignores SIGXFSZ)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture(scope="module")
def searched(micro, tmp_path_factory) -> tuple[SearchResult, Path]:
    """A result and a checkpoint of a real (tiny) search."""
    checkpoint = tmp_path_factory.mktemp("search") / "checkpoint.json"
    shape = (1, 3, 64, 64)
    result = SearchSession(micro, "cpu", proxy=default_proxy(micro, shape, num_images=2), input_shape=shape,
                           latency_budget=0.95, population=4, parents=2, generations=1, checkpoint=checkpoint,
                           progress=False).run()
    return result, checkpoint


@pytest.fixture(params=["predictor", "result", "checkpoint"])
def document(request, searched) -> tuple[Callable[[Path], Path], Callable[[Path], object]]:
    """``(save, load)`` of one kind of file the SDK writes."""
    result, checkpoint = searched
    if request.param == "predictor":
        return LatencyPredictor.load("cpu").save, LatencyPredictor.load
    if request.param == "result":
        return result.save, SearchResult.load
    state, session = read_checkpoint(checkpoint)
    return (lambda path: write_checkpoint(path, state, session)), read_checkpoint


@posix_only
def test_a_failed_save_keeps_the_previous_file(tmp_path, document):
    save, load = document
    path = save(tmp_path / "doc.json")
    before = path.read_bytes()
    with _file_size_limit(len(before) // 2), pytest.raises(OSError, match="previous file, if any, is unchanged"):
        save(path)
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    load(path)


def test_an_interrupted_save_keeps_the_previous_file(tmp_path, document, monkeypatch):
    """Ctrl-C half-way through writing the bytes."""
    save, load = document
    path = save(tmp_path / "doc.json")
    before = path.read_bytes()
    write_text = Path.write_text

    def interrupted(self: Path, text: str, *args, **kwargs) -> int:
        write_text(self, text[: len(text) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    load(path)


def test_atomic_write_creates_folders_and_cleans_up_any_failure(tmp_path):
    path = atomic_write(tmp_path / "a" / "b" / "x.bin", lambda tmp: tmp.write_bytes(b"new"))
    assert path.read_bytes() == b"new"

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken)
    assert path.read_bytes() == b"new" and os.listdir(path.parent) == ["x.bin"]


# --- output paths are checked before the work ----------------------------------------------------

def test_check_writable(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        check_writable(tmp_path)
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        check_writable(tmp_path / "file" / "x.json")
    assert check_writable(tmp_path / "new" / "deeper" / "x.json") == tmp_path / "new" / "deeper" / "x.json"
    assert not (tmp_path / "new").exists()  # checking creates nothing


@posix_only
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(PermissionError, match="not writable"):
        check_writable(folder / "new" / "x.json")


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before the output paths were checked")


def _bad(tmp_path: Path, kind: str) -> Path:
    """An output path that cannot be written: an existing folder, or a path under a file."""
    (tmp_path / "file").write_text("")
    return tmp_path if kind == "folder" else tmp_path / "file" / "out.json"


@pytest.mark.parametrize("kind", ["folder", "under-a-file"])
def test_profile_refuses_its_out_before_measuring(tmp_path, capsys, monkeypatch, kind):
    monkeypatch.setattr(profile_cli, "profile_model", _no_work)
    out = tmp_path
    if kind == "folder":  # where the dataset file should go
        dataset_path(out, "cpu", "swin_micro").mkdir(parents=True)
    else:  # where the dataset root should be
        out = tmp_path / "file"
        out.write_text("")
    assert profile_cli.main(["--model", "swin_micro", "--quick", "--resolution", "64", "--out", str(out),
                             "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparsevit-profile: error: --out: ") and str(out) in err and "\n" not in err


@pytest.mark.parametrize("flag, kind", [("--out", "folder"), ("--out", "under-a-file"), ("--plot", "folder")])
def test_fit_refuses_its_outputs_before_fitting(tmp_path, capsys, monkeypatch, flag, kind):
    monkeypatch.setattr(fit_cli, "load_profiles", _no_work)
    paths = {"--out": str(tmp_path / "ok.json"), flag: str(_bad(tmp_path, kind))}
    argv = ["--profiles", str(tmp_path / "profiles"), *(x for item in paths.items() for x in item)]
    assert fit_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sparsevit-fit: error: {flag}: ") and paths[flag] in err and "\n" not in err


@pytest.mark.parametrize("flag, kind", [("--out", "folder"), ("--out", "under-a-file"), ("--plot", "folder"),
                                        ("--checkpoint", "under-a-file")])
def test_search_refuses_its_outputs_before_searching(tmp_path, capsys, monkeypatch, flag, kind):
    monkeypatch.setattr(search_cli, "build_model", _no_work)
    monkeypatch.setattr(search_cli, "SearchSession", _no_work)
    paths = {"--out": str(tmp_path / "ok.json"), flag: str(_bad(tmp_path, kind))}
    argv = ["--model", "swin_micro", "--resolution", "64x64", *(x for item in paths.items() for x in item)]
    assert search_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sparsevit-search: error: {flag}: ") and paths[flag] in err and "\n" not in err


def test_plots_and_config_files_are_written_atomically(tmp_path, monkeypatch):
    """A figure or config whose write fails leaves the previous file, like every other writer."""
    import matplotlib.figure

    fig = matplotlib.figure.Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    path = write_figure(tmp_path / "plot.png", fig)
    before = path.read_bytes()
    assert before.startswith(b"\x89PNG")  # the format came from the name, not from the .tmp sibling
    monkeypatch.setattr(fig, "savefig", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError, match="previous file, if any, is unchanged"):
        write_figure(path, fig)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    cfg = SearchSpace.from_model(build_model("swin_micro")).uniform(0.5)
    cfg.to_json(tmp_path / "cfg.json")
    assert type(cfg).from_json(tmp_path / "cfg.json") == cfg


def test_fit_refuses_an_overhead_fraction_outside_zero_one():
    with pytest.raises(ValueError, match=r"overhead_fraction must be in \(0, 1\)"):
        LatencyPredictor(overhead_fraction=1.5).fit(pd.DataFrame())


def test_a_damaged_dataset_is_found_before_profiling(tmp_path, monkeypatch):
    from sparsevit_sdk.profiler import profile_model, sweep

    path = dataset_path(tmp_path, "cpu", "swin_micro")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")  # a 0-byte parquet left by a crash of an old version
    monkeypatch.setattr(sweep, "_run", lambda *a, **k: pytest.fail("measured before reading the dataset"))
    with pytest.raises(SchemaError, match="damaged"):
        profile_model("swin_micro", resolutions=["64x64"], hw="cpu", out=tmp_path, progress=False)


def test_session_refuses_a_checkpoint_folder_before_searching(micro, tmp_path):
    shape = (1, 3, 64, 64)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        SearchSession(micro, "cpu", proxy=lambda cfg: pytest.fail("searched"), input_shape=shape,
                      checkpoint=tmp_path)
