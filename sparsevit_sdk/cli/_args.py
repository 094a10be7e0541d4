"""Argument types the ``sparsevit-*`` commands share: a bad value is an argparse error naming the flag."""

from __future__ import annotations

import argparse
import os

from .._atomic import check_writable
from ..profiler.sweep import parse_resolution


def resolution(text: str) -> tuple[int, int]:
    """``672x672`` or ``672`` → ``(H, W)``."""
    try:
        return parse_resolution(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def check_output(flag: str, *paths: str | os.PathLike | None) -> None:
    """Refuse output paths that cannot be written, before the work meant for them (None: flag not given).

    A ValueError naming ``flag``, which every command reports as a one-line error.
    """
    for path in paths:
        if path is not None:
            try:
                check_writable(path)
            except OSError as err:
                raise ValueError(f"{flag}: {err}") from err
