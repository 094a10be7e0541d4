"""Search checkpoints: one JSON file, rewritten atomically after every generation.

A long search on a cluster should survive the machine that drives it: the engine's state
after a generation (every prediction, score and failure, the Logbook, and the strategy's own
state: for the GA its random state and population) is everything it needs to continue exactly
as if it had never stopped.  JSON, not
pickle: a checkpoint is data, readable by any later version that knows the format.

The scores in it are of one model: a session records its fingerprint
(:mod:`.fingerprint`) beside the state, and a resume with another model is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, get_args

from .._atomic import file_lock, lock_path, write_json, write_text
from .._documents import DocumentKind, Field, read_json
from ..config import Granularity
from .fingerprint import check_fingerprint

# 2: the strategy's state replaced the GA's rng_state and population (the target was session.hardware
# up to commit 7747551, session.hw after); 3: the target is session.hw, and session.model the
# fingerprint of the model searched.  No migration: an earlier checkpoint does not say which
# model its scores are of.
CHECKPOINT = DocumentKind("sparsevit-search-checkpoint", 3, "search checkpoint",
                          fix="resume it with the release that wrote it, or start the search again")
FIX = "restore the file, or start the search again"  # a damaged field


@dataclass
class SearchState:
    """The engine after ``generation``: everything :meth:`SearchEngine.run` needs to go on.

    Configs are stored as their ratio lists, in the order they were first seen (the
    history's row order).  ``strategy`` is the strategy's ``state_dict()``, checked by its
    ``load_state_dict``.
    """

    generation: int
    settings: dict[str, Any]  # SearchEngine.shape(): settings, space and strategy; must match on resume
    strategy: dict[str, Any]
    predicted: list[tuple[list[float], float, int]]  # (ratios, predicted ms, generation first seen)
    scores: list[tuple[list[float], float]]
    failed: list[tuple[list[float], str]]  # (ratios, last error) of evaluations given up on
    logbook: list[dict[str, Any]]
    dense_ms: float
    budget_ms: float


def write_checkpoint(path: str | os.PathLike, state: SearchState, session: dict[str, Any]) -> Path:
    """Write ``state`` and the ``session`` settings that rebuild the search around it.

    Written atomically: a crash mid-write leaves the previous generation's checkpoint intact.
    """
    return write_json(path, {**CHECKPOINT.header(), "session": session, "state": asdict(state)})


def read_checkpoint(path: str | os.PathLike) -> tuple[SearchState, dict[str, Any]]:
    """The state and session settings of a checkpoint; a foreign, damaged or hand-edited
    file is refused naming the file and the key (a missing key, a string where a number
    belongs); the strategy's own state is checked by the strategy as it loads it.

    The session is empty for a checkpoint written around a bare :class:`SearchEngine`;
    otherwise it holds every key :meth:`SearchSession.resume` reads.
    """
    data = CHECKPOINT.upgrade(read_json(path, what=CHECKPOINT.what, fix=FIX), str(path))
    doc = Field(data, source=str(path), what=CHECKPOINT.what, fix=FIX)
    state, session = doc["state"], doc["session"]
    _read_settings(state["settings"])
    first = state["predicted"].elements(nonempty=True)[0].elements(length=3)[0]
    knobs = len(first.elements(nonempty=True))  # every config of the search has as many ratios

    def ratios(field: Field) -> list[float]:
        return [r.number(minimum=0, below=1) for r in field.elements(length=knobs)]

    def entries(name: str, length: int) -> list[list[Field]]:
        return [entry.elements(length=length) for entry in state[name].elements()]

    if session.mapping():
        session["hw"].text()
        session["proxy_name"].text()
        for n in session["input_shape"].elements(length=4):
            n.number(integer=True, minimum=1)
        session["elapsed_s"].number(minimum=0)
        check_fingerprint(session["model"])
    return SearchState(
        generation=state["generation"].number(integer=True, minimum=0),
        settings=state["settings"].value,
        strategy=state["strategy"].mapping(),
        predicted=[(ratios(r), ms.number(above=0), gen.number(integer=True, minimum=0))
                   for r, ms, gen in entries("predicted", 3)],
        scores=[(ratios(r), score.number()) for r, score in entries("scores", 2)],
        failed=[(ratios(r), error.text()) for r, error in entries("failed", 2)],
        logbook=[row.mapping() for row in state["logbook"].elements()],
        dense_ms=state["dense_ms"].number(above=0),
        budget_ms=state["budget_ms"].number(above=0),
    ), session.value


def _read_settings(settings: Field) -> None:
    """Check the engine settings :meth:`SearchSession.resume` rebuilds the search from
    (their values are the engine's and the strategy's to judge)."""
    settings["signature"].text()
    settings["strategy"].text()
    settings["strategy_options"].mapping()
    settings["granularity"].text(get_args(Granularity))
    settings["monotonic"].flag()
    settings["seed"].number(integer=True, nullable=True)
    settings["latency_budget"].number(nullable=True)
    settings["budget_ms"].number(nullable=True)
    for g in settings["grid"].elements(nonempty=True):
        g.number(minimum=0, below=1)


class CheckpointInUse(RuntimeError):
    """Another search is writing this checkpoint: two would overwrite each other's state."""


@contextlib.contextmanager
def owning(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``path`` for one search: a second search on the same checkpoint file, by any path to it (a
    symbolic link), is refused at once, naming the owner (the OS frees the lock if the owner dies, so a
    killed search never blocks)."""
    owner = lock_path(path).with_suffix(".owner")  # beside the file's one lock
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(path, timeout=0))
        except TimeoutError as err:
            who = owner.read_text().strip() if owner.is_file() else "another process"
            raise CheckpointInUse(f"checkpoint {path} is being written by another search ({who}); give this "
                                  "search its own checkpoint=, or resume this one once that search has ended") from err
        write_text(owner, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                owner.unlink()
