"""The shared results file: each benchmark rewrites its own ``## Section`` of RESULTS.md."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def now_utc() -> str:
    """When a benchmark ran, as its section states it: ``2026-11-23 17:48 UTC``."""
    return f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"


def write_section(text: str, path: Path = RESULTS) -> None:
    """Put ``text`` (a section whose first line is its ``## `` heading) in ``path``: in place of the
    section with that heading, where it stands, or at the end.

    The file is read right before it is written, since benchmarks run side by side update their
    own sections of it.
    """
    heading = text.splitlines()[0]
    if not heading.startswith("## "):
        raise ValueError(f"a results section starts with its '## ' heading, not {heading!r}")
    old = path.read_text() if path.is_file() else "# Benchmark results\n"
    section = text.strip("\n") + "\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: section, old, count=1) if pattern.search(old) else f"{old.rstrip()}\n\n{section}"
    path.write_text(new.rstrip("\n") + "\n")
