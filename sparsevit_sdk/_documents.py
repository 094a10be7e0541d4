"""Reading back the JSON documents the SDK writes: header, fields, one kind of error.

Predictors, search results, checkpoints and fingerprints outlive the code that wrote them,
and people edit them by hand.  Each kind is a :class:`DocumentKind`: its header names the kind,
the schema and the release that wrote it; a document of an earlier schema is migrated to this
release's, and any other is refused with one message naming the writer, both schemas and the
fix.  A reader then checks every field it uses through :class:`Field`, so a wrong value fails
on load with the file, the field and the fix named, never later as a ``TypeError`` inside
arithmetic or as a negative number of milliseconds.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__


class DocumentError(ValueError):
    """A file the SDK reads back is damaged, hand-edited or of another kind; the message
    names the file, the field and the fix."""


Migration = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class DocumentKind:
    """One kind of file the SDK writes, and how this release reads every schema of it.

    Every change to what a kind holds bumps ``version`` and adds ``migrations[old]``, which turns a
    document of schema ``old`` into one of schema ``old + 1``.  So a file an earlier release wrote
    loads through the chain of migrations, and any other (a later release's, or one older than
    the first migration) is refused naming the release that wrote it, its schema and the fix,
    never as a missing field.  ``implicit`` is the schema of files written before the kind had a
    header (None: such a file is not of this kind).
    """

    format: str
    version: int
    what: str  # the kind for people: "search result"
    fix: str  # what to do with a file this release cannot read: "re-run the search"
    migrations: Mapping[int, Migration] = field(default_factory=dict)
    implicit: int | None = None

    def header(self) -> dict[str, Any]:
        """The fields a document of this kind starts with: its kind, schema and writer."""
        return {"format": self.format, "schema_version": self.version, "sdk_version": __version__}

    def upgrade(self, data: Any, source: str, meta: Mapping[str, Any] | None = None) -> Any:
        """``data`` read as this release's schema (migrated if older), or :class:`DocumentError`.

        ``meta`` holds the header where it is not in ``data`` itself (a parquet file's metadata).
        """
        meta = data if meta is None else meta
        headed = isinstance(meta, Mapping) and "format" in meta
        if (meta["format"] != self.format) if headed else self.implicit is None:
            raise DocumentError(f"{source}: not a sparsevit {self.what} (no format {self.format!r}); {self.fix}")
        found = meta.get("schema_version") if headed else self.implicit
        whole = isinstance(found, int) and not isinstance(found, bool)
        if whole and found == self.version:
            return data
        if not whole or not self._reaches(found):
            writer = _writer(meta) if headed else None
            newer = isinstance(found, int) and found > self.version
            raise DocumentError(
                f"{source}: {self.what} written by {f'sparsevit-sdk {writer}' if writer else 'an earlier release'} "
                f"(schema {found!r}); this release ({__version__}) reads schema {self.version}"
                + (f" and migrates from schema {min(self.migrations)}" if self.migrations else "") + ": "
                + ("upgrade sparsevit-sdk (pip install -U sparsevit-sdk), or " if newer else "") + self.fix)
        for step in range(found, self.version):
            data = self.migrations[step](data)
        return data

    def _reaches(self, found: int) -> bool:
        """Whether the migrations lead from schema ``found`` to this release's."""
        return found < self.version and all(step in self.migrations for step in range(found, self.version))


def _writer(meta: Mapping[str, Any]) -> str | None:
    """The release that wrote a document: its header's, or (predictors before headers named it) its
    ``versions``' entry."""
    versions = meta.get("versions")
    writer = meta.get("sdk_version") or (versions.get("sparsevit_sdk") if isinstance(versions, dict) else None)
    return writer if isinstance(writer, str) else None


def renamed(old: str, new: str) -> Migration:
    """A migration renaming the top-level field ``old`` to ``new`` (a document that already has
    ``new`` keeps it)."""
    def migrate(data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        if old in data:
            data.setdefault(new, data.pop(old))
        return data
    return migrate


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
