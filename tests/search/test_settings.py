"""search/settings.py and the search's public arguments: budgets, and every argument checked by
type and range at the door (sparsevit_sdk.checks), in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn as nn

from sparsevit_sdk import SearchSession, build_model
from sparsevit_sdk.checks import ArgumentError
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search import SearchSettings, resolve_budget

SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


def test_api_budget_messages_suggest_budget_ms_only_when_it_could_be_ms():
    with pytest.raises(ValueError, match=r"in \(0, 1\], got -0.5$"):
        resolve_budget(-0.5, None, 10.0)
    with pytest.raises(ValueError, match="pass budget_ms=7.0"):
        resolve_budget(7.0, None, 10.0)
    assert resolve_budget(np.float32(0.5), None, np.float64(10.0)) == 5.0
    with pytest.raises(ArgumentError, match=r"^resolve_budget: budget_ms=-3 is not accepted; budget_ms takes a number "
                                            r"of milliseconds > 0, or None$"):
        resolve_budget(None, -3, 10.0)


class WithHead(nn.Module):
    """swin_micro and a 1x1 classifier: a whole model, whose rest of the model ``rest_ms`` may give."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = build_model("swin_micro")
        self.head = nn.Conv2d(self.backbone.dims[0], 4, 1)

    def forward(self, x):
        return self.head(self.backbone(x)[0])


@pytest.fixture(scope="module")
def whole() -> WithHead:
    return WithHead().eval()


def session(model, **kwargs) -> SearchSession:
    return SearchSession(model, "cpu", input_shape=SHAPE, proxy=lambda cfg: -cfg.mean, progress=False,
                         **{"population": 4, "parents": 2, "generations": 0, **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    (dict(rest_ms=True), "SearchSession: rest_ms=True is not accepted; rest_ms takes a number of milliseconds >= 0, "
                         "or None (measured or estimated); a bool is not a number"),
    (dict(rest_ms=float("inf")), "SearchSession: rest_ms=inf is not accepted; rest_ms takes a number of milliseconds "
                                 ">= 0, or None (measured or estimated)"),
    (dict(timeout_s=True), "SearchSettings: timeout_s=True is not accepted; timeout_s takes a number of seconds > 0, "
                           "or None (no time limit); a bool is not a number"),
    (dict(max_evaluations=2.5), "SearchSettings: max_evaluations=2.5 is not accepted; max_evaluations takes an "
                                "integer >= 2 (the dense and the fastest uniform config are always scored), or None "
                                "(no limit)"),
    (dict(seed=-1), "SearchSettings: seed=-1 is not accepted; seed takes an integer >= 0, or None (unseeded, not "
                    "reproducible)"),
    (dict(latency_budget=True), "SearchSettings: latency_budget=True is not accepted; latency_budget takes a finite "
                                "number, or None; a bool is not a number"),
    (dict(retries=-1), "SearchSettings: retries=-1 is not accepted; retries takes an integer >= 0 (extra attempts of "
                       "a failed evaluation)"),
    (dict(budget_of="head"), "SearchSettings: budget_of='head' is not accepted; budget_of takes 'model' (the whole "
                             "model as it is called) or 'backbone' (its Swin alone)"),
    (dict(proxy_images=2.5), "SearchSession: proxy_images=2.5 is not accepted; proxy_images takes an integer >= 1"),
    (dict(proxy_resolution=64), "SearchSession: proxy_resolution=64 is not accepted; proxy_resolution takes (height, "
                                "width) in pixels, two integers >= 1, or None (the input's)"),
    (dict(population=6.5), "GeneticSearch: population=6.5 is not accepted; population takes an integer in "
                           "[3, 100000]"),
    (dict(mutation_prob=np.float32(1.5)), "GeneticSearch: mutation_prob=np.float32(1.5) is not accepted; "
                                          "mutation_prob takes a finite number in [0, 1]"),
    (dict(strategy="nsga2", parents=True), "NSGA2Search: parents=True is not accepted; parents takes an integer >= 2 "
                                           "(two breed a child); a bool is not a number"),
    (dict(strategy="random", samples=0, population=None, parents=None, generations=None),
     "RandomSearch: samples=0 is not accepted; samples takes an integer >= 1"),
])
def test_a_bad_argument_is_refused_in_one_line_naming_it_its_value_and_what_it_takes(whole, kwargs, message):
    kwargs = {k: v for k, v in {"population": 4, "parents": 2, "generations": 0, **kwargs}.items() if v is not None}
    with pytest.raises(ArgumentError) as err:
        SearchSession(whole, "cpu", input_shape=SHAPE, proxy=lambda cfg: -cfg.mean, progress=False, **kwargs)
    assert str(err.value) == message


def test_numpy_numbers_are_numbers_and_come_back_as_python_ones(whole):
    s = session(whole, rest_ms=np.float32(5), latency_budget=np.float64(0.95), seed=np.int64(3),
                max_evaluations=np.int32(4), timeout_s=np.float32(30), proxy_resolution=np.array([32, 32]))
    assert s.rest.ms == 5.0 and s.rest.source == "given"
    assert s.settings == SearchSettings(latency_budget=0.95, seed=3, max_evaluations=4, timeout_s=30.0)
    assert [type(v) for v in (s.settings.latency_budget, s.settings.seed, s.settings.max_evaluations)] == [
        float, int, int]
    assert s.run().settings["seed"] == 3


def test_resume_checks_its_run_limits_too(tmp_path, whole):
    checkpoint = tmp_path / "ck.json"
    session(whole, checkpoint=checkpoint, latency_budget=0.95).run()
    with pytest.raises(ArgumentError, match=r"^SearchSettings: timeout_s=True is not accepted"):
        SearchSession.resume(checkpoint, whole, proxy=lambda cfg: -cfg.mean, timeout_s=True)
    with pytest.raises(ArgumentError, match=r"^SearchSession.resume: proxy_images=0 is not accepted"):
        SearchSession.resume(checkpoint, whole, proxy=lambda cfg: -cfg.mean, proxy_images=0)
