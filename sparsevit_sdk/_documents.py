"""Reading back the JSON documents the SDK writes: header, fields, one kind of error.

Predictors, search results, checkpoints and fingerprints outlive the code that wrote them,
and people edit them by hand.  A reader refuses a document of another kind or schema
version with one message naming both and the fix (:func:`check_header`), and checks every
field it uses through :class:`Field`, so a wrong value fails on load with the file, the
field and the fix named, never later as a ``TypeError`` inside arithmetic or as a
negative number of milliseconds.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__


class DocumentError(ValueError):
    """A file the SDK reads back is damaged, hand-edited or of another kind; the message
    names the file, the field and the fix."""


def header(kind: str, version: int) -> dict[str, Any]:
    """The ``format`` and ``schema_version`` fields a document of ``kind`` starts with."""
    return {"format": kind, "schema_version": version}


def check_header(data: Any, kind: str, version: int, *, source: str, what: str, fix: str) -> None:
    """Raise :class:`DocumentError` unless ``data`` is a ``kind`` document of schema ``version``.

    ``what`` names the document for people (``"search checkpoint"``); ``fix`` says what to do.
    """
    if not isinstance(data, dict) or data.get("format") != kind:
        raise DocumentError(f"{source}: not a sparsevit {what} (no format {kind!r}); {fix}")
    if data.get("schema_version") != version:
        raise DocumentError(f"{source}: {what} schema version {data.get('schema_version')!r}, but sparsevit-sdk "
                            f"{__version__} reads version {version}; {fix}")


def read_json(path: str | os.PathLike, *, what: str, fix: str) -> Any:
    """The parsed content of ``path``; a file that is not UTF-8 JSON is refused, named.

    A missing file raises ``FileNotFoundError`` as usual.
    """
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DocumentError(f"{path}: not a sparsevit {what} (not JSON: {err}); {fix}") from err
    except RecursionError as err:  # nesting deeper than any document the SDK writes
        raise DocumentError(f"{path}: not a sparsevit {what} (JSON nested too deep to read); {fix}") from err


def _show(value: Any) -> str:
    """``value`` as the file spells it (``null``, ``NaN``, ``"abc"``); containers by kind."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    try:
        return json.dumps(value)
    except TypeError:  # a Python object handed to from_dict
        return repr(value)


class Field:
    """One value of a JSON document and its place in it (``units.norm.linear[2]``).

    Each accessor checks the value and returns it, or raises :class:`DocumentError` with
    ``"<file>: corrupt <what>: field '<path>' is <value>, expected <rule>; <fix>"``.
    Numbers must be real and finite (``true`` and ``"0.5"`` are not numbers; ``NaN`` is not
    finite), so every number a reader takes from a file means what it says.
    """

    def __init__(self, value: Any, *, source: str, what: str, fix: str, path: str = "") -> None:
        self.value, self.source, self.what, self.fix, self.path = value, source, what, fix, path

    def error(self, problem: str) -> DocumentError:
        """An error about this field: ``problem`` completes "field 'x' ..."."""
        where = f"field {self.path!r}" if self.path else "the document"
        return DocumentError(f"{self.source}: corrupt {self.what}: {where} {problem}; {self.fix}")

    def _child(self, key: str | int, value: Any) -> Field:
        path = f"{self.path}[{key}]" if isinstance(key, int) else f"{self.path}.{key}" if self.path else key
        return Field(value, source=self.source, what=self.what, fix=self.fix, path=path)

    def _expect(self, kind: type, name: str) -> Any:
        if not isinstance(self.value, kind) or (isinstance(self.value, bool) and kind is not bool):
            raise self.error(f"is {_show(self.value)}, expected {name}")
        return self.value

    def __getitem__(self, key: str) -> Field:
        """The required field ``key`` of this object."""
        data = self.mapping()
        if key not in data:
            raise self._child(key, None).error("is missing")
        return self._child(key, data[key])

    def mapping(self) -> dict[str, Any]:
        return self._expect(dict, "an object")

    def items(self) -> list[tuple[str, Field]]:
        """The fields of this object, in file order."""
        return [(key, self._child(key, value)) for key, value in self.mapping().items()]

    def elements(self, *, length: int | None = None, nonempty: bool = False) -> list[Field]:
        """The entries of this list, each a :class:`Field` (``path[i]``)."""
        values = self._expect(list, "a list")
        if length is not None and len(values) != length:
            raise self.error(f"has {len(values)} entries, expected {length}")
        if nonempty and not values:
            raise self.error("is an empty list, expected at least one entry")
        return [self._child(i, v) for i, v in enumerate(values)]

    def text(self, choices: Sequence[str] | None = None) -> str:
        value = self._expect(str, "a string")
        if choices is not None and value not in choices:
            raise self.error(f"is {_show(value)}, expected one of {list(choices)}")
        return value

    def flag(self) -> bool:
        return self._expect(bool, "true or false")

    def number(self, *, minimum: float | None = None, above: float | None = None, below: float | None = None,
               maximum: float | None = None, integer: bool = False, nullable: bool = False) -> Any:
        """A finite number (an ``int`` with ``integer``) within the given bounds; ``None``
        for ``null`` where ``nullable``."""
        if self.value is None and nullable:
            return None
        rule = " and ".join(f"{op} {bound:g}" for op, bound in
                            ((">=", minimum), (">", above), ("<", below), ("<=", maximum)) if bound is not None)
        expected = ("an integer" if integer else "a finite number") + (f" {rule}" if rule else "")
        value = self._expect(numbers.Integral if integer else numbers.Real, expected)
        if not (math.isfinite(value) and (minimum is None or value >= minimum) and (above is None or value > above)
                and (below is None or value < below) and (maximum is None or value <= maximum)):
            raise self.error(f"is {_show(value)}, expected {expected}")
        return int(value) if integer else float(value)
