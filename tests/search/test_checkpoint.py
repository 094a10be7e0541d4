"""search/checkpoint.py: resuming from any generation, damaged checkpoints, one writer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from sparsevit_sdk import SearchSession, build_model, search_space
from sparsevit_sdk._documents import DocumentError
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search import SearchEngine, SettingsDiffer
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
    from sparsevit_sdk.accuracy import AgreementProxy
    from sparsevit_sdk.demo import probe_images
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


SESSION = {"hw": "cpu", "input_shape": [1, 3, 64, 64], "proxy_name": "quadratic", "elapsed_s": 1.5,
           "model": {"structure": "0123", "weights": "4567", "flops": 1000}}


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
    ("session.model", ..., "'session.model'", "is missing"),
    ("session.model.flops", 1.5, "'session.model.flops'", "expected an integer >= 0"),
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


class Headed(nn.Module):
    """swin_micro and a 1x1 classifier of ``width`` outputs, drawn from ``seed``, then ``work``
    parameter-free 64x64 matmuls: the same backbone under heads of other weights, shapes or cost."""

    def __init__(self, width: int = 4, seed: int = 0, work: int = 0) -> None:
        super().__init__()
        self.backbone = build_model("swin_micro")
        self.head = nn.Conv2d(self.backbone.dims[0], width, 1)
        drawn = torch.Generator().manual_seed(seed)
        for tensor in self.head.parameters():
            nn.init.normal_(tensor, generator=drawn)
        self.work = work

    def forward(self, x):
        y = self.head(self.backbone(x)[0])
        a = torch.ones(64, 64)
        return y + 0 * sum((a @ a).sum() for _ in range(self.work))


def scored(cfg) -> float:
    return -cfg.mean


@pytest.fixture(scope="module")
def headed_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("headed") / "search.json"
    SearchSession(Headed(), "cpu", input_shape=(1, 3, 64, 64), proxy=scored, rest_ms=1.0, latency_budget=0.95,
                  population=4, parents=2, generations=1, progress=False, checkpoint=path).run()
    return path


@pytest.mark.parametrize("model, differs", [
    (Headed(seed=1), r"its weights differ \(fingerprint \w+, the search's \w+\)"),
    (Headed(width=32), r"its parameters and buffers differ in name, dtype or shape \(another head or width\?\); one "
                       r"forward of an image does [\d.]+ GFLOP, the searched model's [\d.]+ \(a heavier"),
    (Headed(work=8), r"one forward of an image does [\d.]+ GFLOP, the searched model's [\d.]+ \(a heavier or lighter "
                     r"head\?\)\. Its scores"),
])
def test_resume_refuses_another_model_naming_what_differs(headed_checkpoint, model, differs):
    with pytest.raises(ValueError, match=differs) as err:
        SearchSession.resume(headed_checkpoint, model.eval(), proxy=scored, progress=False)
    assert str(err.value).startswith(f"{headed_checkpoint}: the search was of another model than this one: ")
    assert ("rest-of-model latency (1 ms) are not this model's: start a new search of this model with a new "
            "checkpoint") in str(err.value)


def test_resume_honours_limits_and_refuses_other_settings_listing_them(headed_checkpoint, tmp_path):
    copy = tmp_path / "search.json"
    copy.write_bytes(headed_checkpoint.read_bytes())
    with pytest.raises(SettingsDiffer) as err:
        SearchSession.resume(copy, Headed(), proxy=scored, seed=7, latency_budget=0.4, strategy="random", samples=3,
                             population=4, input_shape=(1, 3, 96, 96))
    assert err.value.differ == {"seed": (7, 0), "latency_budget": (0.4, 0.95), "strategy": ("random", "ga"),
                                "samples": (3, None), "input_shape": ((1, 3, 96, 96), (1, 3, 64, 64))}
    assert str(err.value) == (
        f"{copy}: a resumed search keeps the settings it was started with, and seed=7 (the checkpoint's: seed=0), "
        "latency_budget=0.4 (the checkpoint's: latency_budget=0.95), samples=3 (the checkpoint's: none), "
        "input_shape=(1, 3, 96, 96) (the checkpoint's: input_shape=(1, 3, 64, 64)), strategy='random' (the "
        "checkpoint's: strategy='ga') differ; leave them out (or give the checkpoint's), or start a new search with a "
        "new checkpoint")
    with pytest.raises(TypeError, match="unexpected keyword argument.*populace"):
        SearchSession.resume(copy, Headed(), proxy=scored, populace=4)
    resumed = SearchSession.resume(copy, Headed(), proxy=scored, progress=False, seed=0, strategy="ga",
                                   population=4, input_shape=[1, 3, 64, 64], timeout_s=None, max_evaluations=50)
    assert (resumed.settings.timeout_s, resumed.settings.max_evaluations) == (None, 50)
    assert resumed.run().seed == 0


def test_a_checkpoint_of_an_earlier_schema_is_refused_naming_release_schemas_and_fix(checkpoint):
    """The release before this one wrote schema 2 (its target was session.hardware, today session.hw)."""
    old = json.loads(checkpoint.read_text())
    old["schema_version"] = 2
    del old["sdk_version"], old["session"]["model"]
    old["session"]["hardware"] = old["session"].pop("hw")
    checkpoint.write_text(json.dumps(old))
    with pytest.raises(DocumentError) as err:
        read_checkpoint(checkpoint)
    message = str(err.value)
    assert message.startswith(f"{checkpoint}: search checkpoint written by an earlier ") and "(schema 2)" in message
    assert message.endswith("reads schema 3: resume it with the release that wrote it, or start the search again")
