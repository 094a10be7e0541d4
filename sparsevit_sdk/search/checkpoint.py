"""Search checkpoints: one JSON file, rewritten atomically after every generation.

A long search on a cluster should survive the machine that drives it: the engine's state
after a generation (random state, population, every prediction, score and failure, the
Logbook) is everything it needs to continue exactly as if it had never stopped.  JSON, not
pickle: a checkpoint is data, readable by any later version that knows the format.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._documents import check_header, header

FORMAT = "sparsevit-search-checkpoint"
SCHEMA_VERSION = 1


@dataclass
class SearchState:
    """The engine after ``generation``: everything :meth:`EvolutionSearch.run` needs to go on.

    Configs are stored as their ratio lists, in the order they were first seen (the
    history's row order).  ``rng_state`` is ``random.getstate()`` as JSON lists.
    """

    generation: int
    settings: dict[str, Any]  # the engine settings that shape the search; must match on resume
    rng_state: list
    population: list[list[int]]  # genomes, in population order
    predicted: list[tuple[list[float], float, int]]  # (ratios, predicted ms, generation first seen)
    scores: list[tuple[list[float], float]]
    failed: list[tuple[list[float], str]]  # (ratios, last error) of evaluations given up on
    logbook: list[dict[str, Any]]
    dense_ms: float
    budget_ms: float


def write_checkpoint(path: str | os.PathLike, state: SearchState, session: dict[str, Any]) -> Path:
    """Write ``state`` and the ``session`` settings that rebuild the search around it.

    Written to a temporary sibling and renamed over ``path``: a crash mid-write leaves the
    previous generation's checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**header(FORMAT, SCHEMA_VERSION), "session": session,
                       "state": asdict(state)}) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[SearchState, dict[str, Any]]:
    """The state and session settings of a checkpoint; a foreign or damaged file says so."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a search checkpoint (not JSON: {err})") from err
    check_header(data, FORMAT, SCHEMA_VERSION, source=str(path), what="search checkpoint",
                 fix="start the search again")
    try:
        return SearchState(**data["state"]), dict(data["session"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: corrupt search checkpoint ({type(err).__name__}: {err})") from err
