"""One lock per file, whatever path names it, and a lock file nobody here may open named with its owner and
the fix (``_atomic.file_lock``, used by dataset merges and search checkpoints)."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from pathlib import Path

import pytest

from sparsevit_sdk._atomic import file_lock, lock_path
from sparsevit_sdk.dataset import files
from sparsevit_sdk.dataset.files import merge_rows, read_frame
from sparsevit_sdk.search.checkpoint import CheckpointInUse, owning

from .dataset.test_files import _rows

NOBODY = 65534
needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="making a file of another user needs root")


@pytest.fixture()
def linked(tmp_path) -> tuple[Path, Path]:
    """A file and a symbolic link to it from another folder."""
    real = tmp_path / "runs" / "s.json"
    real.parent.mkdir()
    real.write_text("{}")
    alias = tmp_path / "alias.json"
    alias.symlink_to(real)
    return real, alias


def test_two_searches_on_one_checkpoint_by_two_paths_are_refused(linked):
    """The measured defect: checkpoint="s.json" and checkpoint="alias.json" (a link to it) each took a lock
    of their own, both searches ran and the first one's checkpoint was overwritten."""
    real, alias = linked
    assert lock_path(real) == lock_path(alias) == real.with_name(".s.json.lock")
    with owning(real):
        with pytest.raises(CheckpointInUse, match="alias.json is being written by another search"):
            with owning(alias):
                pass
    with owning(alias):  # free again once the first has ended
        pass


def test_a_dataset_merge_by_a_link_waits_for_the_writer_of_the_file(tmp_path, monkeypatch):
    real = tmp_path / "cpu" / "swin_micro.parquet"
    merge_rows(real, _rows(range(2)))
    alias = tmp_path / "mine.parquet"
    alias.symlink_to(real)
    monkeypatch.setattr(files, "LOCK_TIMEOUT_S", 0.2)
    with file_lock(real, timeout=0):
        with pytest.raises(TimeoutError, match="mine.parquet: another process has been writing it"):
            merge_rows(alias, _rows(range(2, 4)))
    merge_rows(alias, _rows(range(2, 4)))
    assert set(read_frame(real)["index"]) == {0, 1, 2, 3} and alias.is_symlink()


def test_lock_files_are_shared_by_everyone_who_may_write_the_folder(tmp_path):
    with file_lock(tmp_path / "rows.parquet", timeout=0) as lock:
        assert lock.stat().st_mode & 0o777 == 0o666  # they hold no data; 0o644 locked out a team's shared folder


def _merge_as_nobody(path: Path, queue: multiprocessing.Queue) -> None:
    """Merge rows into ``path`` as the user nobody; put the error's message (or None) on ``queue``."""
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        merge_rows(path, _rows(range(1)))
        queue.put(None)
    except OSError as err:
        queue.put(str(err))


@needs_root
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_another_users_lock_file_is_named_with_its_owner_and_the_fix():
    """A shared folder (mode 1777) holding a lock file that user daemon made with an earlier release (0o644):
    it was a bare PermissionError."""
    with tempfile.TemporaryDirectory() as folder:  # not under tmp_path, whose parents only root may enter
        shared = Path(folder)
        shared.chmod(0o1777)
        _refused_as_nobody(shared / "swin_micro.parquet")


def _refused_as_nobody(path: Path) -> None:
    lock = lock_path(path)
    lock.touch()
    os.chown(lock, 1, 1)  # daemon
    lock.chmod(0o644)
    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()
    child = fork.Process(target=_merge_as_nobody, args=(path, queue))
    child.start()
    child.join(timeout=60)
    message = queue.get(timeout=5)
    assert message is not None and f"its lock file {lock} belongs to daemon (uid 1)" in message
    assert f"chmod a+rw {lock}" in message and "or write to a folder of your own" in message
