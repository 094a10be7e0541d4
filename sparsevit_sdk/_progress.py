"""Progress bars: live on a terminal, a few lines in a log.

tqdm redraws its line at every update; where stderr is no terminal (CI, ``nohup``, a redirected
file) each redraw becomes a line of the log, and the quickstart alone wrote about 180 of them.
There a bar redraws at most every :data:`LOG_INTERVAL_S` seconds, besides its first and last
line.  The bottom layer: every module that shows progress builds its bar here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

LOG_INTERVAL_S = 60.0  # how often a bar writes a line into a log (not a terminal)


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or ``total=``), off unless ``enabled``; on a terminal it
    redraws as tqdm does, into a log once a minute (descriptions and postfixes set between
    redraws wait for the next one)."""
    interactive = sys.stderr is not None and sys.stderr.isatty()
    if not interactive:
        options = {"mininterval": LOG_INTERVAL_S, "maxinterval": LOG_INTERVAL_S, **options}
    return tqdm(iterable, disable=not enabled, dynamic_ncols=interactive, **options)
