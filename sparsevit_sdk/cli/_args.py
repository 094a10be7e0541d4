"""Argument types the ``sparsevit-*`` commands share: a bad value is an argparse error naming the flag."""

from __future__ import annotations

import argparse

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
