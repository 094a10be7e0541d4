"""The one way the SDK writes a file: a reader, or the next run, never finds half of one.

Profiles, predictors, results, checkpoints and caches all go through :func:`atomic_write`:
the bytes go to a temporary sibling, are flushed to the disk, and the sibling is renamed
over the target.  A rename within a folder is atomic, so the target holds the previous file
or the new one whatever happens in between (a full disk, a file-size limit, Ctrl-C, a
crash), and the sibling is removed on any failure.  :func:`check_writable` lets a command
refuse a bad output path before the work whose result it is meant to hold.

Writers that read a file and write it back (a dataset merge, a search owning its checkpoint) hold
:func:`file_lock`: one lock per file, whatever path names it (a symbolic link, ``a/../b``), so two
paths to one file never let two writers in at once.

A target that is a symbolic link is written through it (the file it points to is replaced, the
link stays), as ``open(path, "w")`` would.  A writer killed outright (SIGKILL, power loss) can
leave its temporary sibling behind; the next write of the same file removes the ones older than
:data:`ORPHAN_AGE_S` (a live writer's is younger).

The bottom layer: imports nothing from the package, so every module can use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

ORPHAN_AGE_S = 3600.0  # a temporary sibling this old belongs to no live writer


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp)`` on a temporary sibling of ``path``, fsync it, rename it over ``path``.

    ``write`` gets a path, not a file object, so any serializer fits (``to_parquet``,
    ``torch.save``, text); the path ends in ``.tmp``, so one that picks its format by the
    extension (``savefig``) must be told the format.  Missing parent folders are created.
    An OSError names ``path`` and says the previous file is unchanged; returns ``path``.
    """
    path = Path(path)
    target = path.resolve() if path.is_symlink() else path  # write what the link points to, keep the link
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")  # unique: concurrent writers never share one
    _remove_orphans(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the bytes are on the disk before the name points to them
        os.replace(tmp, target)
    except BaseException as err:  # KeyboardInterrupt included: leave no half file behind
        with contextlib.suppress(OSError):  # never created, or its folder could not be
            tmp.unlink()
        if isinstance(err, OSError):
            message = f"could not write {path} ({err.strerror or err}); the previous file, if any, is unchanged"
            raise (OSError(err.errno, message) if err.errno else OSError(message)) from err
        raise
    return path


def _remove_orphans(target: Path) -> None:
    """Temporary siblings of ``target`` left by writers that were killed, never by live ones."""
    now = time.time()
    for old in target.parent.glob(f".{target.name}.*.tmp") if target.parent.is_dir() else ():
        with contextlib.suppress(OSError):  # gone already, or not ours to remove
            if now - old.stat().st_mtime > ORPHAN_AGE_S:
                old.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` as UTF-8, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any, **dumps: Any) -> Path:
    """``data`` as one JSON document and a newline, atomically; ``dumps`` go to :func:`json.dumps`."""
    return write_text(path, json.dumps(data, **dumps) + "\n")


def write_figure(path: str | os.PathLike, figure: Any, **savefig: Any) -> Path:
    """A matplotlib figure, atomically, in the format its file name says (``.png`` by default)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format=fmt, **savefig))


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` as a Path once :func:`atomic_write` could create it there; an OSError says why not.

    For commands to call before the work (a sweep, a fit, a search of hours) rather than
    after it.  Nothing is created: missing folders only need a writable existing ancestor.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file path")
    if path.is_symlink():  # written through: what matters is where the link points
        check_writable(path.resolve())
        return path
    folder = next(p for p in path.parents if p.exists())  # the nearest that exists; atomic_write creates the rest
    if not folder.is_dir():
        raise NotADirectoryError(f"cannot create {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: {folder} is not writable")
    return path



def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of the file at ``path``: beside the file itself once every link is resolved, so
    all the paths that name one file share one lock."""
    target = Path(path).resolve()
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, timeout: float) -> Iterator[Path]:
    """Hold the cross-process lock of the file at ``path`` (see :func:`lock_path`); yields the lock file.

    Waits up to ``timeout`` seconds (0: not at all) for another holder, then raises ``TimeoutError``
    (``filelock.Timeout``).  The OS frees the lock when its holder dies, so a killed writer never
    blocks.  Lock files are made writable by everyone (they hold no data), so people sharing a folder
    share its locks; one that this user cannot open is refused naming it, its owner and the fix.
    """
    lock = lock_path(path)
    holder = FileLock(lock, timeout=timeout, mode=0o666)
    try:
        holder.acquire()
    except PermissionError as err:
        raise PermissionError(err.errno, _not_yours(path, lock)) from err
    try:
        yield lock
    finally:
        holder.release()


def _not_yours(path: str | os.PathLike, lock: Path) -> str:
    """Why this user cannot take the lock ``lock`` of ``path``, and what to do."""
    if not lock.exists():
        return (f"cannot lock {path}: cannot create its lock file {lock} ({lock.parent} is not writable by you); "
                "write to a folder of your own, or ask the folder's owner for write access")
    owner = _user(lock.stat().st_uid)
    return (f"cannot lock {path}: its lock file {lock} belongs to {owner} and is not writable by you; ask "
            f"them to run `chmod a+rw {lock}` (a lock file holds no data; this release makes new ones shared), or "
            "write to a folder of your own")


def _user(uid: int) -> str:
    """``name (uid N)``, or ``uid N`` where no account has that uid (or the OS has no user database)."""
    try:
        import pwd  # POSIX only

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"
