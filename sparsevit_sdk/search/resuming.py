"""What a resumed search may be given: the settings it started with, or this run's limits."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from .settings import RUN_FIELDS, check_keywords
from .strategies import OPTION_NAMES


class SettingsDiffer(ValueError):
    """Settings given to :meth:`SearchSession.resume` that differ from the checkpointed search's:
    ``differ`` maps each name to (the value given, the checkpoint's)."""

    def __init__(self, path: str | os.PathLike, differ: dict[str, tuple[Any, Any]]) -> None:
        self.path, self.differ = path, differ
        super().__init__(self.message(lambda name, value: f"{name}={value!r}"))

    def message(self, spell: Callable[[str, Any], str]) -> str:
        """The refusal, each setting written by ``spell(name, value)`` (a command spells flags)."""
        listed = ", ".join(f"{spell(name, given)} (the checkpoint's: "
                           f"{'none' if recorded is None else spell(name, recorded)})"
                           for name, (given, recorded) in self.differ.items())
        return (f"{self.path}: a resumed search keeps the settings it was started with, and {listed} differ; leave "
                "them out (or give the checkpoint's), or start a new search with a new checkpoint")


def check_given(path: str | os.PathLike, given: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """The run settings of ``given`` (a resume's keywords), once every other one is found equal to
    the checkpoint's ``recorded`` one; a keyword that is neither is refused, naming them."""
    check_keywords(given, caller="SearchSession.resume", allowed=(*RUN_FIELDS, *recorded, *OPTION_NAMES))
    if isinstance(given.get("input_shape"), Sequence):
        given = {**given, "input_shape": tuple(given["input_shape"])}
    differ = {name: (value, recorded.get(name)) for name, value in given.items()
              if name not in RUN_FIELDS and value != recorded.get(name)}
    if differ:
        raise SettingsDiffer(path, differ)
    return {name: value for name, value in given.items() if name in RUN_FIELDS}
