"""Where the shipped data folders are: package data (``sparsevit_sdk.predictors`` /
``sparsevit_sdk.profiles``, mapped from the top-level folders by setup.py) when the
package is installed, editable or not; the folders next to the package in a bare checkout."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Literal

Folder = Literal["predictors", "profiles"]


def data_dir(folder: Folder) -> Path:
    """Directory of the shipped ``predictors/`` or ``profiles/`` data."""
    try:
        return Path(str(importlib.resources.files(f"sparsevit_sdk.{folder}")))
    except ModuleNotFoundError:  # a source tree on sys.path without `pip install`
        return Path(__file__).resolve().parent.parent / folder


def shipped_predictors() -> dict[str, Path]:
    """Shipped predictor files by name (``cpu`` → ``predictors/cpu.json``)."""
    return {p.stem: p for p in sorted(data_dir("predictors").glob("*.json"))}
