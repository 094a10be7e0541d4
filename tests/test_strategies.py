"""search/strategy.py and search/strategies: every strategy behind one engine, and checkpoints of each."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sparsevit_sdk import SearchSession, SearchSpace, SparsityConfig
from sparsevit_sdk.demo import default_proxy
from sparsevit_sdk.search import (
    STRATEGIES,
    GeneticSearch,
    RandomSearch,
    SearchEngine,
    Trial,
    read_checkpoint,
    write_checkpoint,
)

COST = np.array([3.0, 2.0, 2.0, 2.0, 2.0, 1.0])
SENSITIVITY = np.array([4.0, 2.0, 0.5, 0.7, 1.0, 3.0])
SMALL = {"ga": dict(population=8, parents=3, generations=3), "nsga2": dict(population=8, parents=3, generations=3),
         "random": dict(samples=6, generations=3)}


def latency(configs: list[SparsityConfig]) -> np.ndarray:
    return 1.0 + (1.0 - np.array([c.ratios for c in configs])) @ COST


def quadratic(cfg: SparsityConfig) -> float:
    return float(1.0 - SENSITIVITY @ np.square(cfg.ratios))


@pytest.fixture()
def space() -> SearchSpace:
    return SearchSpace((2, 2, 6, 2), "swin-analytic")  # Swin-T's 6 pair knobs


@pytest.fixture(scope="module")
def proxy(micro):
    return default_proxy(micro, (1, 3, 64, 64), num_images=2)


def engine(space: SearchSpace, name: str, **kwargs) -> SearchEngine:
    return SearchEngine(space, latency, quadratic, strategy=name, latency_budget=0.7, seed=0,
                        **{**SMALL[name], **kwargs})


def same(a, b) -> None:
    assert a.best == b.best and a.best_score == b.best_score
    assert a.history.equals(b.history) and a.progress.equals(b.progress)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_meets_the_budget_and_is_reproducible(space, name):
    search = engine(space, name)
    out = search.run()
    assert out.best_ms <= out.budget_ms and len(out.progress) == search.strategy.rounds == 4
    same(out, engine(space, name).run())
    if STRATEGIES[name].objective == "budget":  # the engine never scores a config over the budget
        scored = out.history.dropna(subset=["score"])
        assert scored["feasible"].sum() >= len(scored) - 1  # dense, the reference, is the one exception


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_checkpoint_resume_equals_an_unbroken_run(space, name, tmp_path):
    """Interrupted after every generation in turn, through the file, each strategy ends where an unbroken run does."""
    states = []
    full = engine(space, name, checkpoint=states.append).run()
    assert len(states) == len(full.progress)
    for i, state in enumerate(states[:-1]):
        path = write_checkpoint(tmp_path / f"{name}{i}.json", state, {})
        json.loads(path.read_text())  # plain JSON
        same(engine(space, name).run(read_checkpoint(path)[0]), full)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_session_resumes_each_strategy_from_its_checkpoint(micro, proxy, name, tmp_path):
    """The session rebuilds a built-in strategy from the checkpoint's name and options."""
    path = tmp_path / "search.ckpt.json"
    settings = dict(latency_budget=0.95, proxy=proxy, input_shape=(1, 3, 64, 64), progress=False, strategy=name,
                    **SMALL[name])
    full = SearchSession(micro, "cpu", **settings).run()
    after_first = 2 + int(full.progress["evaluations"].iloc[0])  # the references and the first generation's
    cut = SearchSession(micro, "cpu", checkpoint=path, max_evaluations=after_first + 1, **settings).run()
    assert cut.stopped is not None
    resumed = SearchSession.resume(path, micro, proxy=proxy, progress=False).run()
    assert resumed.strategy == name and resumed.settings["strategy_options"].items() >= SMALL[name].items()
    assert resumed.best == full.best and resumed.history.equals(full.history)


class Grid:
    """A strategy of a user's own: one uniform config per round, hottest first (the seam is one class)."""

    name, objective, rounds = "grid", "budget", 9  # the grid's 9 values

    def __init__(self) -> None:
        self.told: list[Trial] = []

    def options(self) -> dict:
        return {}

    def start(self, problem, seed) -> None:
        self.problem, self.next = problem, 0

    def ask(self) -> list[SparsityConfig]:
        cfg = self.problem.space.uniform(self.problem.space.grid[-1 - self.next])
        self.problem.predict([cfg])
        self.next += 1
        return [cfg]

    def tell(self, trials: list[Trial]) -> None:
        self.told += trials

    def state_dict(self) -> dict:
        return {"next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.next = state["next"]


def test_a_strategy_of_ones_own_is_passed_as_an_object(space):
    strategy = Grid()
    out = SearchEngine(space, latency, quadratic, strategy=strategy, latency_budget=0.7).run()
    assert out.best == max((t for t in strategy.told if t.feasible), key=lambda t: t.score).config
    over = [t for t in strategy.told if not t.feasible and t.config != space.dense()]  # dense: the reference
    assert over and all(t.score is None for t in over)  # never scored over the budget


def test_options_go_to_the_named_strategy_and_others_are_refused(space):
    assert isinstance(engine(space, "random").strategy, RandomSearch)
    with pytest.raises(TypeError, match="population.*the search settings it takes are.*samples, generations"):
        SearchEngine(space, latency, quadratic, strategy="random", latency_budget=0.7, population=8)
    with pytest.raises(TypeError, match="to its constructor"):
        SearchEngine(space, latency, quadratic, strategy=GeneticSearch(), latency_budget=0.7, population=8)
    with pytest.raises(ValueError, match="unknown search strategy 'bayes'.*ga, nsga2, random"):
        SearchEngine(space, latency, quadratic, strategy="bayes", latency_budget=0.7)


def test_resume_with_other_strategy_options_is_refused(space):
    states = []
    engine(space, "ga", checkpoint=states.append).run()
    with pytest.raises(ValueError, match="other settings.*strategy_options"):
        engine(space, "ga", population=9).run(states[0])


@pytest.mark.parametrize("name, key, value, named", [
    ("ga", "population", [[0, 99, 0, 0, 0, 0]], "'population[0][1]'"),
    ("ga", "rng", [3, [1, 2], None], "random.getstate()"),
    ("random", "rng", {"bit_generator": "PCG64"}, "'rng'"),
])
def test_a_hand_edited_strategy_state_is_refused_naming_the_key(space, name, key, value, named):
    states = []
    engine(space, name, checkpoint=states.append).run()
    states[0].strategy[key] = value
    with pytest.raises(ValueError, match="start the search again") as err:
        engine(space, name).run(states[0])
    assert named in str(err.value)
