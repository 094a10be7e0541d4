"""Search: the DEAP engine on an analytic objective, then SearchSession, SearchResult and the
CLI with the real latency predictor and proxy on swin_micro."""

from __future__ import annotations

import itertools
import json
import random
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from sparsevit_sdk import SearchSpace, SparsityConfig, build_model
from sparsevit_sdk.accuracy import default_proxy
from sparsevit_sdk.cli.search import main as search_main
from sparsevit_sdk.hardware import get_hardware
from sparsevit_sdk.predictor import LatencyPredictor
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search import EvolutionSearch, SearchResult, SearchSession, pareto_front

# --- an analytic objective for the generic optimiser ----------------------------------------
# Latency: a fixed cost plus per-knob costs that shrink with the kept fraction (FLOPs-like).
# Score: a quadratic penalty with a different sensitivity per knob, so the best config under a
# budget is not uniform and can be found by brute force over the monotone space.
COST = np.array([3.0, 2.0, 2.0, 2.0, 2.0, 1.0])
SENSITIVITY = np.array([4.0, 2.0, 0.5, 0.7, 1.0, 3.0])


def latency(configs: list[SparsityConfig]) -> np.ndarray:
    return 1.0 + (1.0 - np.array([c.ratios for c in configs])) @ COST


class Quadratic:
    """Higher is better; counts its calls per config."""

    name = "quadratic"

    def __init__(self) -> None:
        self.calls: Counter[SparsityConfig] = Counter()

    def __call__(self, cfg: SparsityConfig) -> float:
        self.calls[cfg] += 1
        return float(1.0 - SENSITIVITY @ np.square(cfg.ratios))


class CountingLatency:
    def __init__(self) -> None:
        self.seen: Counter[SparsityConfig] = Counter()

    def __call__(self, configs: list[SparsityConfig]) -> np.ndarray:
        self.seen.update(configs)
        return latency(configs)


@pytest.fixture()
def swin_t_space() -> SearchSpace:
    return SearchSpace((2, 2, 6, 2), "swin-analytic")  # Swin-T's 6 pair knobs


def search(space: SearchSpace, **kwargs) -> EvolutionSearch:
    settings = dict(latency_budget=0.7, population=20, parents=6, generations=6, seed=0)
    return EvolutionSearch(space, kwargs.pop("latency_fn", latency), kwargs.pop("proxy", Quadratic()),
                           **{**settings, **kwargs})


def brute_force(space: SearchSpace, budget_ms: float) -> float:
    genomes = np.array(list(itertools.product(range(len(space.grid)), repeat=space.num_knobs)))
    genomes = genomes[(np.diff(genomes[:, 2:5], axis=1) >= 0).all(axis=1)]  # stage 3 non-decreasing
    ratios = np.asarray(space.grid)[genomes]
    feasible = 1.0 + (1.0 - ratios) @ COST <= budget_ms
    return float((1.0 - np.square(ratios[feasible]) @ SENSITIVITY).max())


# --- engine ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["single", "nsga2"])
@pytest.mark.parametrize("budget", [0.5, 0.8])
def test_best_meets_the_budget_and_is_the_best_feasible_scored(swin_t_space, mode, budget):
    out = search(swin_t_space, latency_budget=budget, mode=mode).run()
    h = out.history
    assert out.budget_ms == pytest.approx(budget * out.dense_ms)
    assert out.best_ms <= out.budget_ms
    assert (h["feasible"] == (h["predicted_ms"] <= out.budget_ms)).all()
    assert out.best_score == h.loc[h["feasible"], "score"].max()
    assert str(out.best) in set(h["config"])
    for ratios in h["ratios"]:
        swin_t_space.config(ratios)  # raises unless repaired: non-decreasing within stage 3


def test_single_mode_scores_only_feasible_configs_and_dense(swin_t_space):
    out = search(swin_t_space, latency_budget=0.6).run()
    scored = out.history.dropna(subset=["score"])
    assert (scored["feasible"] | (scored["config"] == str(swin_t_space.dense()))).all()
    assert out.dense_score == 1.0
    assert (~out.history["feasible"]).any()  # infeasible children were ranked, not resampled forever


def test_first_population_is_drawn_within_budget(swin_t_space):
    """As in the reference search, the random part of generation 0 is rejection-sampled under the
    budget; here most uniform random draws are over it."""
    out = search(swin_t_space, latency_budget=0.5, generations=0).run()
    assert out.progress.loc[0, "feasible_fraction"] == 1.0
    first = out.history[out.history["generation"] == 0]
    assert first["score"].notna().sum() >= 20  # every member new, so each was scored


def test_reference_settings_come_close_to_the_brute_force_optimum(swin_t_space):
    out = search(swin_t_space, population=100, parents=25, generations=10).run()  # SparseViT's settings
    optimum = brute_force(swin_t_space, out.budget_ms)
    uniform = max(Quadratic()(swin_t_space.uniform(g)) for g in swin_t_space.grid
                  if latency([swin_t_space.uniform(g)])[0] <= out.budget_ms)
    assert out.best_score >= uniform
    assert (optimum - out.best_score) <= 0.05 * (optimum - uniform)


def test_seeded_search_is_reproducible_and_isolated_from_global_random(swin_t_space):
    class Noisy(Quadratic):  # a proxy that draws from the global stream between generations
        def __call__(self, cfg):
            random.random()
            return super().__call__(cfg)

    random.seed(1234)
    state = random.getstate()
    a = search(swin_t_space, seed=7).run()
    assert random.getstate() == state  # the caller's stream is untouched
    b = search(swin_t_space, seed=7, proxy=Noisy()).run()
    pd.testing.assert_frame_equal(a.history, b.history)
    pd.testing.assert_frame_equal(a.progress, b.progress)
    c = search(swin_t_space, seed=8).run()
    assert not a.history["config"].equals(c.history["config"])


def test_every_config_is_predicted_once_and_scored_at_most_once(swin_t_space):
    proxy, lat = Quadratic(), CountingLatency()
    out = search(swin_t_space, proxy=proxy, latency_fn=lat, mode="nsga2", generations=8).run()
    assert max(proxy.calls.values()) == 1
    assert max(lat.seen.values()) == 1
    assert out.history["config"].is_unique
    assert set(lat.seen) == {swin_t_space.config(r) for r in out.history["ratios"]}
    assert out.progress["evaluations"].sum() + 2 == len(proxy.calls)  # + the dense and fastest references


def test_infeasible_budget_is_a_clear_error(swin_t_space):
    fastest = latency([swin_t_space.sparsest()])[0]  # 1 + 0.2 * 12 = 3.4 ms of 13 ms dense
    with pytest.raises(ValueError, match=rf"fastest reachable predicted latency is {fastest:.4g} ms .* dense 13 ms"):
        search(swin_t_space, latency_budget=0.2).run()
    with pytest.raises(ValueError, match="budget_ms=3.4"):
        search(swin_t_space, latency_budget=None, budget_ms=3.0).run()
    search(swin_t_space, latency_budget=None, budget_ms=fastest, generations=1).run()  # exactly reachable: fine
    flat = search(swin_t_space, latency_fn=lambda configs: np.full(len(configs), 5.0), latency_budget=0.9)
    with pytest.raises(ValueError, match="fixed costs dominate"):
        flat.run()


@pytest.mark.parametrize("kwargs, message", [
    (dict(latency_budget=None), "exactly one budget"),
    (dict(budget_ms=5.0), "exactly one budget"),
    (dict(latency_budget=7.0), r"pass budget_ms=7.0"),
    (dict(parents=20), "parents < population"),
    (dict(mode="random"), "mode must be"),
    (dict(population=10**9, parents=6), r"population must be <= 100000"),  # as a corrupted checkpoint could say
    (dict(generations=-1), r"generations must be in 0..100000"),
    (dict(executor=object()), "map"),
])
def test_bad_settings_say_how_to_fix_them(swin_t_space, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        search(swin_t_space, **kwargs).run()


def test_pareto_front_is_non_dominated_and_covers_every_scored_config(swin_t_space):
    out = search(swin_t_space, mode="nsga2", generations=8).run()
    front, scored = out.pareto, out.history.dropna(subset=["score"])
    assert len(front) > 3
    assert front["predicted_ms"].is_monotonic_increasing and front["score"].is_monotonic_increasing
    for _, p in front.iterrows():
        dominated = (scored["score"] >= p.score) & (scored["predicted_ms"] <= p.predicted_ms) & (
            (scored["score"] > p.score) | (scored["predicted_ms"] < p.predicted_ms))
        assert not dominated.any()
    for _, s in scored.iterrows():  # everything scored is matched or beaten by the front
        assert ((front["score"] >= s.score) & (front["predicted_ms"] <= s.predicted_ms)).any()


def test_pareto_front_by_hand():
    h = pd.DataFrame({"predicted_ms": [1.0, 2.0, 2.0, 3.0, 4.0], "score": [0.1, 0.5, 0.4, 0.3, np.nan]})
    assert pareto_front(h)[["predicted_ms", "score"]].values.tolist() == [[1.0, 0.1], [2.0, 0.5]]


def test_evaluation_goes_through_the_executor_map(swin_t_space):
    class Recording:
        def __init__(self):
            self.items = 0

        def map(self, fn, iterable):
            items = list(iterable)
            self.items += len(items)
            return map(fn, items)

    recording, proxy = Recording(), Quadratic()
    out = search(swin_t_space, executor=recording, proxy=proxy).run()
    assert recording.items == len(proxy.calls) == out.history["score"].notna().sum()
    with ThreadPoolExecutor(2) as pool:
        threaded = search(swin_t_space, executor=pool).run()
    pd.testing.assert_frame_equal(out.history, threaded.history)


def test_deap_types_are_created_once(swin_t_space):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # DEAP warns when a creator class is overwritten
        for mode in ("single", "nsga2", "single"):
            search(swin_t_space, mode=mode, generations=1).run()


# --- SearchSession on swin_micro with the real predictor and proxy ---------------------------

SHAPE = (1, 3, 112, 112)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Proxy forwards run single-threaded: on a shared 2-core machine two torch threads
    contend with other jobs and run several times slower than one."""
    with num_threads(1):
        yield


@pytest.fixture(scope="module")
def model(micro):
    return micro


@pytest.fixture(scope="module")
def cpu_budget(model) -> float:
    """Half-way between the fastest uniform config and dense: always reachable, never trivial."""
    space = SearchSpace.from_model(model)
    ms = LatencyPredictor.for_hardware("cpu").predict_configs(model, [space.uniform(g) for g in space.grid], SHAPE)
    return float((1.0 + ms.min() / ms[0]) / 2)


@pytest.fixture(scope="module")
def proxy(model):
    return default_proxy(model, SHAPE, num_images=4)


@pytest.fixture(scope="module")
def result(model, proxy, cpu_budget) -> SearchResult:
    return SearchSession(model, "cpu", latency_budget=cpu_budget, proxy=proxy, input_shape=SHAPE, population=6,
                         parents=2, generations=2, progress=False).run()


def test_session_result_is_feasible_and_consistent(model, proxy, result, cpu_budget):
    predictor = LatencyPredictor.for_hardware("cpu")
    assert result.predicted_ms <= result.budget_ms == pytest.approx(cpu_budget * result.dense_predicted_ms)
    assert result.predicted_ms == pytest.approx(predictor.predict_config(model, result.best, SHAPE))
    assert result.dense_predicted_ms == pytest.approx(predictor.predict_config(model, SearchSpace.from_model(
        model).dense(), SHAPE))
    assert result.score == proxy(result.best) and result.dense_score == 1.0
    assert (result.hardware, result.estimated, result.proxy_name) == ("cpu", False, proxy.name)
    assert len(result.progress) == 3 and result.evaluations <= 6 + 2 * 4 + 2
    assert model.block_sparsity == [[0.0] * d for d in model.depths]  # the search leaves the model dense


def test_result_json_round_trip(tmp_path, model, result):
    path = result.save(tmp_path / "result.json")
    loaded = SearchResult.load(path, model=model)
    assert loaded.to_dict() == result.to_dict()
    assert loaded.best == result.best and loaded.input_shape == SHAPE
    pd.testing.assert_frame_equal(loaded.history, result.history)
    pd.testing.assert_frame_equal(loaded.progress, result.progress)
    pd.testing.assert_frame_equal(loaded.pareto, result.pareto)
    json.loads(path.read_text())  # strict JSON: unscored configs are null, not NaN
    assert "NaN" not in path.read_text()
    with pytest.raises(ValueError, match="made for model"):
        SearchResult.load(path, model=build_model("swin_t", seed=None))
    with pytest.raises(ValueError, match="pass the model"):
        SearchResult.load(path).validate("cpu")


def test_validate_times_dense_and_sparse_and_restores_the_model(model, result):
    model.set_sparsity(SearchSpace.from_model(model).uniform(0.3))
    before = model.block_sparsity
    report = result.validate("cpu", repeats=3, warmup=1, rounds=2)
    assert model.block_sparsity == before and not model.training
    assert report.dense_ms > 0 and report.sparse_ms > 0 and len(report.sparse_rounds_ms) == 2
    assert report.predicted_ms == result.predicted_ms and report.statistic == "p10_ms"
    assert report.threads == 1 and report.clock in ("wall", "cpu")  # as the shipped cpu predictor was measured
    assert report.ratio == pytest.approx(report.sparse_ms / result.predicted_ms)
    assert f"{report.speedup:.2f}x" in str(report)
    model.set_sparsity(SearchSpace.from_model(model).dense())


def test_plot_draws_front_and_progress(tmp_path, result):
    fig = result.plot(tmp_path / "pareto.png")
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    front_ax, progress_ax = fig.axes
    assert "Pareto front" in [t.get_text() for t in front_ax.get_legend().get_texts()]
    assert list(progress_ax.lines[0].get_ydata()) == result.progress["best_score"].tolist()


def test_default_proxy_is_used_and_announced(model, cpu_budget, caplog):
    with caplog.at_level("WARNING"):
        session = SearchSession(model, "cpu", latency_budget=cpu_budget, input_shape=SHAPE, progress=False)
    assert session.proxy.name.startswith("agreement")
    assert "no proxy given" in caplog.text


def test_estimated_target_is_flagged_and_not_validated_against(model, proxy):
    session = SearchSession(model, "jetson-orin", latency_budget=1.0, proxy=proxy, input_shape=SHAPE, population=4,
                            parents=2, generations=0, progress=False)
    assert session.predictor.estimated == (get_hardware("jetson-orin").predictor is None)
    result = session.run()
    assert result.estimated == session.predictor.estimated and result.hardware == "jetson-orin"
    if result.estimated:
        report = result.validate("cpu", repeats=2, warmup=0, rounds=1)
        assert not report.comparable and "estimated" in report.note
        assert "ESTIMATED" in result.summary()


def test_session_refuses_an_unknown_target_a_foreign_space_and_bad_shapes(model, proxy):
    with pytest.raises(ValueError, match="known targets"):
        SearchSession(model, "tpu-v9", proxy=proxy, input_shape=SHAPE)
    with pytest.raises(ValueError, match="SearchSpace.from_model"):
        SearchSession(model, "cpu", proxy=proxy, input_shape=SHAPE, space=SearchSpace((2, 2, 6, 2), "other"))
    with pytest.raises(ValueError, match="has 1 channels, but the model takes 3"):
        SearchSession(model, "cpu", proxy=proxy, input_shape=(1, 1, 64, 64))
    with pytest.raises(ValueError, match="every size >= 1"):
        SearchSession(model, "cpu", proxy=proxy, input_shape=(0, 3, 64, 64))


# --- CLI -------------------------------------------------------------------------------------


def test_cli_end_to_end(tmp_path, capsys, model, cpu_budget):
    out, png = tmp_path / "result.json", tmp_path / "pareto.png"
    code = search_main(["--model", "swin_micro", "--hw", "cpu", "--budget", f"{cpu_budget:.4f}", "--resolution",
                        "112x112", "--generations", "1", "--population", "4", "--parents", "2", "--out", str(out),
                        "--plot", str(png), "--no-progress", "--proxy-resolution", "64x64", "--proxy-images", "2"])
    assert code == 0
    assert "best config" in capsys.readouterr().out
    loaded = SearchResult.load(out, model=model)
    assert loaded.predicted_ms <= loaded.budget_ms and loaded.proxy_name == "agreement-cosine(demo, 2x64x64)"
    assert png.stat().st_size > 0


def test_cli_reports_an_infeasible_budget(tmp_path, capsys):
    code = search_main(["--model", "swin_micro", "--budget", "0.05", "--resolution", "112x112",
                        "--out", str(tmp_path / "r.json"), "--no-progress"])
    assert code == 2
    assert "fastest reachable predicted latency" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("flag", ["--proxy-images", "--batch", "--workers"])
def test_cli_refuses_counts_below_one(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        search_main(["--model", "swin_micro", flag, "0", "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert f"argument {flag}: expected a positive integer, got '0'" in capsys.readouterr().err
