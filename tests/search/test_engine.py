"""search/engine.py: the DEAP engine on an analytic objective."""

from __future__ import annotations

import itertools
import random
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from sparsevit_sdk import SearchSpace, SparsityConfig
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search import SearchEngine, pareto_front

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


def search(space: SearchSpace, **kwargs) -> SearchEngine:
    settings = dict(latency_budget=0.7, population=20, parents=6, generations=6, seed=0)
    return SearchEngine(space, kwargs.pop("latency_fn", latency), kwargs.pop("proxy", Quadratic()),
                        **{**settings, **kwargs})


def brute_force(space: SearchSpace, budget_ms: float) -> float:
    genomes = np.array(list(itertools.product(range(len(space.grid)), repeat=space.num_knobs)))
    genomes = genomes[(np.diff(genomes[:, 2:5], axis=1) >= 0).all(axis=1)]  # stage 3 non-decreasing
    ratios = np.asarray(space.grid)[genomes]
    feasible = 1.0 + (1.0 - ratios) @ COST <= budget_ms
    return float((1.0 - np.square(ratios[feasible]) @ SENSITIVITY).max())


@pytest.mark.parametrize("strategy", ["ga", "nsga2"])
@pytest.mark.parametrize("budget", [0.5, 0.8])
def test_best_meets_the_budget_and_is_the_best_feasible_scored(swin_t_space, strategy, budget):
    out = search(swin_t_space, latency_budget=budget, strategy=strategy).run()
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


@pytest.mark.slow
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
    out = search(swin_t_space, proxy=proxy, latency_fn=lat, strategy="nsga2", generations=8).run()
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
    (dict(strategy="bayes"), "unknown search strategy"),
    (dict(population=10**9, parents=6), r"population takes an integer in \[3, 100000\]"),  # as a damaged file could
    (dict(generations=-1), r"generations takes an integer in \[0, 100000\]"),
    (dict(executor=object()), "map"),
])
def test_bad_settings_say_how_to_fix_them(swin_t_space, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        search(swin_t_space, **kwargs).run()


def test_pareto_front_is_non_dominated_and_covers_every_scored_config(swin_t_space):
    out = search(swin_t_space, strategy="nsga2", generations=8).run()
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
        for strategy in ("ga", "nsga2", "ga"):
            search(swin_t_space, strategy=strategy, generations=1).run()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Proxy forwards run single-threaded: on a shared 2-core machine two torch threads
    contend with other jobs and run several times slower than one."""
    with num_threads(1):
        yield


class Scripted:
    """A strategy of one's own that proposes ``script``'s rounds as given, then ``[]`` (done);
    ``rounds`` is far more than it needs, as a strategy that decides when it is done may say."""

    name, objective, rounds = "scripted", "budget", 10**6

    def __init__(self, *script) -> None:
        self.script, self.told = list(script), []

    def options(self) -> dict:
        return {}

    def start(self, problem, seed) -> None:
        self.asked = 0

    def ask(self):
        self.asked += 1
        return self.script[self.asked - 1] if self.asked <= len(self.script) else []

    def tell(self, trials) -> None:
        self.told.append([t.config for t in trials])

    def state_dict(self) -> dict:
        return {"asked": self.asked}

    def load_state_dict(self, state) -> None:
        self.asked = state["asked"]


def test_an_empty_answer_means_the_strategy_is_done(swin_t_space):
    checkpoints = []
    strategy = Scripted([swin_t_space.uniform(0.1)], [swin_t_space.uniform(0.2)])
    engine = SearchEngine(swin_t_space, latency, Quadratic(), strategy=strategy, latency_budget=0.9, timeout_s=60,
                          checkpoint=checkpoints.append)
    out = engine.run()
    assert strategy.asked == 3 and len(out.progress) == 2 and len(checkpoints) == 2  # no round after the []
    assert out.stopped == ("finished after 2 of 1000000 generations: strategy 'scripted' had no more configs to "
                           "propose (its ask() returned [])")


def test_knob_values_are_made_configs_of_the_space(swin_t_space):
    strategy = Scripted([[0.1] * 6, (0.2,) * 6], np.array([[0.3] * 6, [0.0, 0.1, 0.1, 0.2, 0.3, 0.4]]))
    out = SearchEngine(swin_t_space, latency, Quadratic(), strategy=strategy, latency_budget=0.9, timeout_s=60).run()
    assert strategy.told == [[swin_t_space.uniform(0.1), swin_t_space.uniform(0.2)],
                             [swin_t_space.uniform(0.3), swin_t_space.config([0.0, 0.1, 0.1, 0.2, 0.3, 0.4])]]
    assert {"[0.3, 0.3, 0.3, 0.3, 0.3, 0.3]", "[0, 0.1, 0.1, 0.2, 0.3, 0.4]"} <= set(out.history["config"])


@pytest.mark.parametrize("answer, error, message", [
    ([[0.15] * 6], ValueError, r"proposed \[0.15, .*\], not a config of this search: values \[0.15, 0.15, 0.15, "
                               r"0.15, 0.15, 0.15\] are off the search space's grid \[0.0, 0.1"),
    ([[0.1] * 3], ValueError, r"proposed \[0.1, 0.1, 0.1\], not a config of this search: expected 6 sparsity values"),
    ([[0.0, 0.1, 0.5, 0.3, 0.3, 0.4]], ValueError, r"sparsity decreases within stage 3 .*space.repair"),
    ([[True] * 6], ValueError, r"knob value=True is not accepted; knob value takes a finite number in \[0, 1\)"),
    ([{"ratios": [0.1] * 6}], ValueError, "neither a SparsityConfig nor a sequence of one sparsity per knob"),
    ([SearchSpace((2, 2, 6, 2), "another-model").uniform(0.1)], ValueError, "made for model 'another-model'"),
    ("0.1", TypeError, r"ask\(\) returned '0.1', not a list"),
    (None, TypeError, r"ask\(\) returned None, not a list"),
])
def test_a_strategy_answer_off_the_space_is_refused_naming_strategy_and_config(swin_t_space, answer, error, message):
    proxy = Quadratic()
    engine = SearchEngine(swin_t_space, latency, proxy, strategy=Scripted(answer), latency_budget=0.9, timeout_s=60)
    with pytest.raises(error, match=message) as err:
        engine.run()
    assert "strategy 'scripted'" in str(err.value)
    assert set(proxy.calls) == {swin_t_space.dense(), swin_t_space.sparsest()}  # the references only: nothing scored
