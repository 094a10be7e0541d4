"""Saying a warning once per process.

A sweep times hundreds of models and a session reuses one calibration many times; the same warning
repeated at each would bury the one that matters.  The bottom layer: imports nothing from the package.
"""

from __future__ import annotations

import logging

_SAID: set[tuple[str, str]] = set()  # (logger, what was said) already said in this process


def warn_once(logger: logging.Logger, key: str, message: str, *args: object) -> None:
    """``logger.warning(message, *args)`` unless ``logger`` already said ``key`` in this process."""
    if (logger.name, key) not in _SAID:
        _SAID.add((logger.name, key))
        logger.warning(message, *args)
