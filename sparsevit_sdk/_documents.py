"""The header every JSON document the SDK writes carries, and the check that reads it back.

Predictors, search results and checkpoints outlive the code that wrote them; a reader
refuses a document of another kind or schema version with one message naming both and
the fix, rather than failing later on a missing key.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__


def header(kind: str, version: int) -> dict[str, Any]:
    """The ``format`` and ``schema_version`` fields a document of ``kind`` starts with."""
    return {"format": kind, "schema_version": version}


def check_header(data: Any, kind: str, version: int, *, source: str, what: str, fix: str) -> None:
    """Raise ``ValueError`` unless ``data`` is a ``kind`` document of schema ``version``.

    ``what`` names the document for people (``"search checkpoint"``); ``fix`` says what to do.
    """
    if not isinstance(data, dict) or data.get("format") != kind:
        raise ValueError(f"{source}: not a sparsevit {what} (no format {kind!r}); {fix}")
    if data.get("schema_version") != version:
        raise ValueError(f"{source}: {what} schema version {data.get('schema_version')!r}, but sparsevit-sdk "
                         f"{__version__} reads version {version}; {fix}")
