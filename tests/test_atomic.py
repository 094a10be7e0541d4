"""_atomic.py: nothing lost; failed and interrupted saves keep the previous file, output paths are checked before the
work."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sparsevit_sdk import LatencyPredictor, SearchResult, SearchSession, build_model, search_space
from sparsevit_sdk._atomic import atomic_write, check_writable, write_figure
from sparsevit_sdk.demo import default_proxy
from sparsevit_sdk.search.checkpoint import read_checkpoint, write_checkpoint

posix_only = pytest.mark.skipif(os.name != "posix", reason="file-size limits are POSIX")


def _leftovers(folder: Path) -> list[str]:
    """Temporary files a write left behind."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


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
    cfg = search_space(build_model("swin_micro")).uniform(0.5)
    cfg.to_json(tmp_path / "cfg.json")
    assert type(cfg).from_json(tmp_path / "cfg.json") == cfg


def test_writes_follow_a_symlink_and_remove_orphaned_temporary_files(tmp_path):
    import os

    from sparsevit_sdk._atomic import ORPHAN_AGE_S, check_writable, write_json

    real = tmp_path / "data" / "real.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert check_writable(link) == link
    write_json(link, {"new": 1})
    assert link.is_symlink() and json.loads(real.read_text()) == {"new": 1}  # the link kept, its target updated
    old, young = real.parent / ".real.json.deadbeef.tmp", real.parent / ".real.json.cafef00d.tmp"
    for orphan in (old, young):
        orphan.write_text("half a file")
    stale = time.time() - 2 * ORPHAN_AGE_S
    os.utime(old, (stale, stale))
    write_json(link, {"new": 2})
    assert not old.exists() and young.exists()  # a live writer's temporary file is never touched
