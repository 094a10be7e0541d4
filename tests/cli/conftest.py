"""Helpers shared by the command tests."""

from __future__ import annotations

from pathlib import Path

import pytest


def _refused(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before the output paths were checked")


def _bad(tmp_path: Path, kind: str) -> Path:
    """An output path that cannot be written: an existing folder, or a path under a file."""
    (tmp_path / "file").write_text("")
    return tmp_path if kind == "folder" else tmp_path / "file" / "out.json"
