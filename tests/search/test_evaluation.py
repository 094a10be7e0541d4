"""search/evaluation.py: limits that end a search early and say so, and proxy returns that are not numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from sparsevit_sdk import SearchResult, SearchSession, SearchSpace
from sparsevit_sdk.demo import default_proxy
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search import SearchEngine, engine
from sparsevit_sdk.search.session import DEFAULT_TIMEOUT_S

from .test_engine import Quadratic, latency

SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


@pytest.fixture()
def space() -> SearchSpace:
    return SearchSpace((2, 2, 6, 2), "swin-analytic")


def search(space: SearchSpace, proxy=None, **kwargs) -> SearchEngine:
    settings = dict(latency_budget=0.7, population=12, parents=4, generations=6, seed=0)
    return SearchEngine(space, latency, Quadratic() if proxy is None else proxy, **{**settings, **kwargs})


class Clock:
    """A stand-in for the engine's ``time``: every proxy call takes one second."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_time_limit_stops_mid_generation_and_says_so(space, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(engine, "time", clock)

    class Slow(Quadratic):
        def __call__(self, cfg):
            clock.now += 1.0
            return super().__call__(cfg)

    proxy = Slow()
    out = search(space, proxy, timeout_s=20).run()
    assert 20 <= len(proxy.calls) <= 21  # checked after every call: overshoots by at most one
    assert out.stopped.startswith(f"stopped early after {len(out.progress)} of 7 generations (the last one cut short)")
    assert "time limit of 20 s was reached; pass a larger timeout_s" in out.stopped
    assert out.best_ms <= out.budget_ms and out.best_score == out.history["score"][out.history["feasible"]].max()
    assert search(space).run().stopped is None  # no limit fires: every generation runs


def test_evaluation_limit_is_exact_deterministic_and_resumable(space):
    proxy, states = Quadratic(), []
    out = search(space, proxy, max_evaluations=30, checkpoint=states.append).run()
    assert len(proxy.calls) == out.history["score"].notna().sum() == 30  # the two references included
    assert "limit of 30 proxy evaluations was reached" in out.stopped
    again = search(space, max_evaluations=30).run()
    pd.testing.assert_frame_equal(out.history, again.history)
    # the generation cut short was not checkpointed: resuming it with the limit lifted gives the unbroken run
    assert states[-1].generation == len(out.progress) - 2
    full = search(space).run()
    pd.testing.assert_frame_equal(search(space).run(states[-1]).history, full.history)
    exact = search(space, max_evaluations=29).run()  # 2 references + 11 + 8 + 8: met as generation 2 ends
    assert exact.stopped.startswith("stopped early after 3 of 7 generations: the limit of 29")


def test_patience_stops_a_search_that_no_longer_improves(space):
    out = search(space, lambda cfg: 0.5, patience=2).run()  # a flat proxy: nothing beats generation 0
    assert len(out.progress) == 3  # generation 0, then two without a better best score
    assert "after 3 of 7 generations: the best score has not improved for 2 generations" in out.stopped
    assert "cut short" not in out.stopped


@pytest.mark.parametrize("kwargs, message", [
    (dict(timeout_s=0), "timeout_s=0 is not accepted; timeout_s takes a number of seconds > 0, or None"),
    (dict(max_evaluations=1), "max_evaluations takes an integer >= 2 .the dense and the fastest uniform config"),
    (dict(patience=0), "patience takes an integer >= 1 .generations., or None"),
])
def test_bad_limits_say_what_is_valid(space, kwargs, message):
    with pytest.raises(ValueError, match=message):
        search(space, **kwargs)


@pytest.fixture(scope="module")
def proxy(micro):
    return default_proxy(micro, SHAPE, num_images=2)


def test_session_defaults_end_in_minutes_and_the_summary_says_why(micro, proxy, tmp_path):
    session = SearchSession(micro, "cpu", latency_budget=1.0, proxy=proxy, input_shape=SHAPE, progress=False)
    assert session.engine.timeout_s == DEFAULT_TIMEOUT_S == 600  # the README one-liner: minutes, not hours
    result = SearchSession(micro, "cpu", latency_budget=1.0, proxy=proxy, input_shape=SHAPE, population=4, parents=2,
                           generations=3, max_evaluations=3, progress=False).run()
    assert "stopped early after 1 of 4 generations (the last one cut short): the limit of 3 proxy evaluations" in (
        result.summary())
    assert SearchResult.load(result.save(tmp_path / "r.json")).stopped == result.stopped


class Returns(Quadratic):
    """Returns ``value`` for one config (feasible, in the first population, not a reference)."""

    def __init__(self, target, value) -> None:
        super().__init__()
        self.target, self.value = target, value

    def __call__(self, cfg):
        score = super().__call__(cfg)
        return self.value if cfg == self.target else score


@pytest.mark.parametrize("value, shown", [
    ("0.5", "'0.5' (str)"), (True, "True (bool)"), (None, "None (NoneType)"), (math.nan, "nan (float)"),
    (np.inf, "inf (float)"), (np.float32("nan"), "(float32)"), (torch.tensor(0.5), "(Tensor)"),
])
def test_a_proxy_return_that_is_not_a_finite_number_is_a_recorded_failure(space, value, shown):
    target = space.uniform(0.5)
    proxy = Returns(target, value)
    out = search(space, proxy, retries=1).run()  # one NaN does not end the search
    assert proxy.calls[target] == 2  # retried like an exception
    row = out.history.set_index("config").loc[str(target)]
    assert pd.isna(row["score"]) and row["error"].startswith("proxy 'quadratic' returned ")
    assert f"{shown}; a proxy must return a real, finite number" in row["error"]
    assert out.history["error"].notna().sum() == 1 and len(out.progress) == 7


@pytest.mark.parametrize("value", [np.float32(0.25), np.int64(0), 1])
def test_numpy_and_int_scores_are_numbers(space, value):
    target = space.uniform(0.5)
    out = search(space, Returns(target, value), generations=0).run()
    assert out.history.set_index("config").loc[str(target), "score"] == float(value)
