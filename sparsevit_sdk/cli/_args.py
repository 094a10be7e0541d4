"""Argument types the ``sparsevit-*`` commands share: a bad value is an argparse error naming the flag."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn as nn

from .._atomic import check_writable
from ..hardware import get_hardware, looks_like_file
from ..local import LOCAL
from ..models import build_model, input_shape_for, list_models
from ..profiler.sweep import parse_resolution

T = TypeVar("T")


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


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan  # fails every range check below


def positive_float(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def fraction(*, one: bool = False, hint: str = "") -> Callable[[str], float]:
    """A type for a fraction in (0, 1), or (0, 1] with ``one``; a bad value names the range
    (and ``hint``: the flag the user may have meant)."""
    def parse(text: str) -> float:
        value = _number(text)
        if not (0 < value < 1 or (one and value == 1)):
            raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1{']' if one else ')'}, got {text!r}{hint}")
        return value
    return parse


def or_none(parse: Callable[[str], T]) -> Callable[[str], T | None]:
    """``parse``, or None for ``none``: a limit switched off."""
    def parse_or_none(text: str) -> T | None:
        return None if text.strip().lower() == "none" else parse(text)
    return parse_or_none


def hardware(text: str) -> str:
    """A target name, ``local`` or the path of an existing predictor file (``--hw``): a missing
    file is "not found", never an unknown target, and an empty name is no name."""
    path = Path(text)
    if path.is_file():
        return text
    if text == LOCAL:
        return text
    if looks_like_file(text):
        what = "is not a file" if path.exists() else "not found"
        raise argparse.ArgumentTypeError(f"predictor file {text!r} {what}")
    try:
        get_hardware(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{err}; or 'local' (calibrate on this CPU), or give a predictor .json "
                                         "file") from err
    return text


MODEL_HELP = (f"a built-in model ({', '.join(list_models())}; random weights) or module:function, importable "
              "from here, that returns your model")
RESOLUTION_HELP = "HxW of the input (default: the size the model declares, else 672x672)"


def user_model(text: str) -> tuple[str, object]:
    """``--model``: a built-in name as it is, or ``module:function`` (a user's whole model): the
    function is imported and called with no arguments, and must return the model to time.  Its
    name (and dataset file) is ``module.function``: two modules' ``build`` never share one."""
    if ":" not in text:
        return text, text
    module, _, function = text.partition(":")
    if os.getcwd() not in sys.path:  # as `python -m` does: the user's module sits where the command runs
        sys.path.insert(0, os.getcwd())
    try:
        build = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"--model {text}: cannot import {function!r} from {module!r} ({err}); give "
                         "module:function, importable from here, that returns your model") from err
    model = build()
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"--model {text}: {function}() returned a {type(model).__name__}, not a torch.nn.Module")
    return f"{module}.{function}", model


def model_from(text: str) -> tuple[str, nn.Module]:
    """``--model`` built: a built-in by name (its random weights), or the module of ``module:function``."""
    name, model = user_model(text)
    return name, build_model(model) if isinstance(model, str) else model


def input_shape(model: nn.Module, resolution: Sequence[int] | None, batch: int | None) -> tuple[int, ...]:
    """``--resolution`` and ``--batch`` as an input ``(B, C, H, W)``: where one is not given, the
    model's declared input (``input_shape_for``, batch 1), as every command and the Python API default."""
    if resolution is None:
        default = input_shape_for(model)
        return (batch or default[0], *default[1:])
    declared = input_shape_for(model)
    return input_shape_for(model, (batch or 1, declared[1], *resolution))  # another size than declared: a warning


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
