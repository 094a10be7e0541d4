"""Hostile-user probes of the search (issue 13): limits that end a search early and say so,
proxy returns that are not numbers, shapes the model refuses, bad CLI arguments, fp16/bf16
window scores and an unreachable Ray cluster.  Each asserts a clear message or the correct
behaviour; all run in seconds on swin_micro at 64x64 or on the analytic objective."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from sparsevit_sdk import SearchSpace
from sparsevit_sdk.accuracy import default_proxy
from sparsevit_sdk.cli.fit import main as fit_main
from sparsevit_sdk.cli.search import main as search_main
from sparsevit_sdk.predictor import LatencyPredictor
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search import EvolutionSearch, SearchResult, SearchSession, engine, resolve_budget
from sparsevit_sdk.search.session import DEFAULT_TIMEOUT_S
from sparsevit_sdk.sparse.windows import WindowLayout

from .test_search import Quadratic, latency

SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


@pytest.fixture()
def space() -> SearchSpace:
    return SearchSpace((2, 2, 6, 2), "swin-analytic")


def search(space: SearchSpace, proxy=None, **kwargs) -> EvolutionSearch:
    settings = dict(latency_budget=0.7, population=12, parents=4, generations=6, seed=0)
    return EvolutionSearch(space, latency, Quadratic() if proxy is None else proxy, **{**settings, **kwargs})


# --- limits: a search ends when told, and says when and why ------------------------------------


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
    (dict(timeout_s=0), "timeout_s must be a positive number of seconds"),
    (dict(max_evaluations=1), "max_evaluations must be >= 2"),
    (dict(patience=0), "patience must be >= 1"),
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


def test_cli_limits_and_their_message(tmp_path, capsys):
    code = search_main(["--model", "swin_micro", "--budget", "1", "--resolution", "64x64", "--population", "4",
                        "--parents", "2", "--generations", "3", "--max-evaluations", "4", "--timeout-s", "none",
                        "--patience", "2", "--proxy-images", "1", "--out", str(tmp_path / "r.json"),
                        "--no-progress"])
    assert code == 0
    assert "the limit of 4 proxy evaluations was reached" in capsys.readouterr().out
    settings = SearchResult.load(tmp_path / "r.json").settings
    assert (settings["timeout_s"], settings["max_evaluations"], settings["patience"]) == (None, 4, 2)


# --- a proxy's return is a real finite number, or a failed evaluation ------------------------------


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


# --- the predictor refuses shapes the model refuses ---------------------------------------------


def test_predictor_refuses_a_shape_the_model_refuses(micro):
    predictor, cfg = LatencyPredictor.for_hardware("cpu"), SearchSpace.from_model(micro).dense()
    with pytest.raises(ValueError, match=r"has 1 channels, but the model takes 3"):
        predictor.predict_config(micro, cfg, input_shape=(1, 1, 224, 224))
    assert predictor.predict_config(micro, cfg, input_shape=(1, 3, 224, 224)) > 0


# --- CLI arguments: the valid range, the right cause ------------------------------------------


def _refused(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("flag, value, message", [
    ("--budget", "-0.5", "argument --budget: expected a fraction in (0, 1], got '-0.5'; for a budget in "
                         "milliseconds use --budget-ms"),
    ("--budget", "nan", "argument --budget: expected a fraction in (0, 1], got 'nan'"),
    ("--budget-ms", "-3", "argument --budget-ms: expected a positive number, got '-3'"),
    ("--hw", "", "argument --hw: unknown hardware ''; known targets: cpu"),
    ("--timeout-s", "0", "argument --timeout-s: expected a positive number, got '0'"),
    ("--patience", "-1", "argument --patience: expected a positive integer, got '-1'"),
])
def test_cli_search_refuses_bad_arguments_naming_the_valid_range(tmp_path, capsys, flag, value, message):
    err = _refused(search_main, ["--model", "swin_micro", flag, value, "--out", str(tmp_path / "r.json")], capsys)
    assert message in err and "budget_ms=" not in err


def test_cli_search_says_a_predictor_file_is_missing(tmp_path, capsys):
    missing = tmp_path / "missing" / "pred.json"
    err = _refused(search_main, ["--model", "swin_micro", "--hw", str(missing), "--out", str(tmp_path / "r.json")],
                   capsys)
    assert f"argument --hw: predictor file {str(missing)!r} not found" in err and "unknown hardware" not in err


def test_api_budget_messages_suggest_budget_ms_only_when_it_could_be_ms():
    with pytest.raises(ValueError, match=r"in \(0, 1\], got -0.5$"):
        resolve_budget(-0.5, None, 10.0)
    with pytest.raises(ValueError, match="pass budget_ms=7.0"):
        resolve_budget(7.0, None, 10.0)


@pytest.mark.parametrize("value", ["2", "-1", "0", "1"])
def test_cli_fit_refuses_an_overhead_fraction_outside_0_1(tmp_path, capsys, value):
    err = _refused(fit_main, ["--profiles", str(tmp_path), "--out", str(tmp_path / "p.json"), "--overhead-fraction",
                              value], capsys)
    assert f"argument --overhead-fraction: expected a fraction in (0, 1), got '{value}'" in err


# --- half precision keeps the fp32 windows -------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_window_scores_are_fp32_whatever_the_activation_dtype(dtype):
    """Two windows whose scores differ by less than a half-precision step: scored in half
    precision they tie, so the lower id wins; in fp32 the higher score does, as in fp32."""
    layout = WindowLayout.build(8, 8, 4)
    x = torch.ones(1, 8, 8, 16)
    x[0, 4, 4] = 1 + torch.finfo(dtype).eps  # a token of window 3, exactly representable in ``dtype``
    regular, shifted = layout.window_scores(x.to(dtype))
    assert regular.dtype == shifted.dtype == torch.float32
    torch.testing.assert_close(regular, layout.window_scores(x.to(dtype).float())[0], rtol=0, atol=0)
    assert regular[0, 3] > regular[0, 0]


# --- an unreachable Ray cluster ----------------------------------------------------------------


def test_an_unreachable_ray_address_fails_in_seconds(tmp_path, capsys):
    pytest.importorskip("ray")
    from sparsevit_sdk.search.executors import RayExecutor

    with pytest.raises(ConnectionError, match=r"cannot reach a Ray cluster at '127.0.0.1:1' .*ray start --head"):
        RayExecutor("127.0.0.1:1")
    code = search_main(["--model", "swin_micro", "--executor", "ray", "--ray-address", "127.0.0.1:1", "--out",
                        str(tmp_path / "r.json"), "--no-progress"])
    assert code == 2 and "cannot reach a Ray cluster at '127.0.0.1:1'" in capsys.readouterr().err
