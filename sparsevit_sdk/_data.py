"""Where the shipped data folders are: next to the package in a source checkout, package data
(``sparsevit_sdk.predictors`` / ``sparsevit_sdk.profiles``) when installed from a wheel."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Literal

Folder = Literal["predictors", "profiles"]


def data_dir(folder: Folder) -> Path:
    """Directory of the shipped ``predictors/`` or ``profiles/`` data."""
    checkout = Path(__file__).resolve().parent.parent / folder
    if (checkout / "__init__.py").is_file():
        return checkout
    return Path(str(importlib.resources.files(f"sparsevit_sdk.{folder}")))


def shipped_predictors() -> dict[str, Path]:
    """Shipped predictor files by name (``cpu`` → ``predictors/cpu.json``)."""
    return {p.stem: p for p in sorted(data_dir("predictors").glob("*.json"))}
