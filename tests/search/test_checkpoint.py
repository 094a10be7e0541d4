"""search/checkpoint.py: resuming from any generation, damaged checkpoints, one writer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sparsevit_sdk import SearchSession, search_space
from sparsevit_sdk._documents import DocumentError
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search import SearchEngine
from sparsevit_sdk.search.checkpoint import read_checkpoint, write_checkpoint

from ..conftest import _edit
from .test_engine import Quadratic, latency
from .test_executors import evolve

SHAPE = (1, 3, 112, 112)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


@pytest.mark.parametrize("strategy", ["ga", "nsga2"])
def test_engine_resumes_from_any_generation(swin_t_space, tmp_path, strategy):
    states = []
    full = evolve(swin_t_space, Quadratic(), strategy=strategy, checkpoint=states.append).run()
    assert [s.generation for s in states] == [0, 1, 2, 3]
    for state in states[:-1]:
        path = write_checkpoint(tmp_path / "ck.json", state, {})
        resumed = evolve(swin_t_space, Quadratic(), strategy=strategy).run(read_checkpoint(path)[0])
        pd.testing.assert_frame_equal(resumed.history, full.history)
        pd.testing.assert_frame_equal(resumed.progress, full.progress)
    with pytest.raises(ValueError, match="other settings .*strategy_options"):
        SearchEngine(swin_t_space, latency, Quadratic(), latency_budget=0.7, population=10, parents=4,
                     generations=3).run(states[1])


def test_session_refuses_a_checkpoint_folder_before_searching(micro, tmp_path):
    shape = (1, 3, 64, 64)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        SearchSession(micro, "cpu", proxy=lambda cfg: pytest.fail("searched"), input_shape=shape,
                      checkpoint=tmp_path)


def test_a_checkpoint_has_one_writer(tmp_path, micro):
    from sparsevit_sdk import SearchSession
    from sparsevit_sdk.accuracy import AgreementProxy, probe_images
    from sparsevit_sdk.search.checkpoint import CheckpointInUse, owning

    checkpoint = tmp_path / "search.ckpt"
    proxy = AgreementProxy(micro, probe_images((1, 3, 64, 64), num_images=1)[0])
    session = SearchSession(micro, "cpu", input_shape=SHAPE, proxy=proxy, latency_budget=0.95, population=4,
                            parents=2, generations=1, progress=False, checkpoint=checkpoint)
    with owning(checkpoint):  # a search running elsewhere holds it
        with pytest.raises(CheckpointInUse, match=r"being written by another search \(\{\"pid\": \d+"):
            session.run()
    assert not checkpoint.exists()  # the refused search wrote nothing
    assert session.run().best is not None  # once the other has ended, it is this search's
    with owning(checkpoint):
        pass  # and the lock is free again after it


SESSION = {"hw": "cpu", "input_shape": [1, 3, 64, 64], "proxy_name": "quadratic", "elapsed_s": 1.5}


@pytest.fixture(scope="module")
def state(micro):
    space = search_space(micro)
    states = []
    SearchEngine(space, lambda cfgs: 1.0 + (1.0 - np.array([c.ratios for c in cfgs])).sum(axis=1),
                 lambda cfg: -float(np.square(cfg.ratios).sum()), latency_budget=0.7, population=8, parents=3,
                 generations=1, seed=0, checkpoint=states.append).run()
    return states[-1]


@pytest.fixture()
def checkpoint(state, tmp_path):
    return write_checkpoint(tmp_path / "ck.json", state, SESSION)


@pytest.mark.parametrize("field, value, named, expected", [
    ("state.strategy", [], "'state.strategy'", "expected an object"),  # its content: tests/test_strategies.py
    ("state.dense_ms", ..., "'state.dense_ms'", "is missing"),
    ("state.budget_ms", "5", "'state.budget_ms'", "expected a finite number > 0"),
    ("state.settings.grid", ..., "'state.settings.grid'", "is missing"),
    ("state.settings.monotonic", "yes", "'state.settings.monotonic'", "true or false"),
    ("state.predicted.0.1", -3.0, "'state.predicted[0][1]'", "> 0"),
    ("state.scores.0.0.0", 1.5, "'state.scores[0][0][0]'", "< 1"),
    ("state.settings.strategy", ..., "'state.settings.strategy'", "is missing"),
    ("session.input_shape", "1x3x64x64", "'session.input_shape'", "expected a list"),
    ("session.hw", ..., "'session.hw'", "is missing"),
    ("session", [], "'session'", "expected an object"),
])
def test_checkpoint_field_is_refused_on_read(checkpoint, field, value, named, expected):
    checkpoint.write_text(json.dumps(_edit(json.loads(checkpoint.read_text()), field, value)))
    with pytest.raises(DocumentError) as err:
        read_checkpoint(checkpoint)
    message = str(err.value)
    assert str(checkpoint) in message and named in message and expected in message, message
    assert "start the search again" in message


def test_unedited_checkpoint_reads_back_the_same_state(checkpoint, state):
    assert read_checkpoint(checkpoint) == (state, SESSION)
