"""search/session.py: SearchSession with the real latency predictor and proxy on swin_micro, and the SearchResult it
returns."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sparsevit_sdk import (
    LatencyPredictor,
    SearchResult,
    SearchSession,
    SearchSpace,
    build_model,
    search_space,
    set_sparsity,
)
from sparsevit_sdk.cli.search import main as search_main
from sparsevit_sdk.demo import default_proxy
from sparsevit_sdk.hardware import get_hardware
from sparsevit_sdk.profiler.timing import num_threads

SHAPE = (1, 3, 112, 112)


def test_a_predictor_for_another_runtime_is_refused_naming_the_fix(micro):
    with pytest.raises(ValueError, match="predicts eager latencies, not compiled.*hw='local'"):
        SearchSession(micro, hw="cpu", runtime="compiled", input_shape=SHAPE, progress=False,
                      proxy=lambda cfg: -cfg.mean)


def test_a_search_on_a_cpu_predictor_measured_elsewhere_names_hw_local(micro, caplog):
    from sparsevit_sdk.profiler import device_fingerprint

    here = device_fingerprint("cpu", threads=1, clock="cpu")
    elsewhere = {**here, "name": "Some Other CPU", "fingerprint_id": "0123456789ab"}
    for fingerprint, warned in [(here, False), (elsewhere, True)]:
        predictor = LatencyPredictor.from_dict({**LatencyPredictor.load("cpu").to_dict(), "fingerprint": fingerprint})
        caplog.clear()
        with caplog.at_level("WARNING"):
            SearchSession(micro, hw=predictor, input_shape=SHAPE, progress=False, proxy=lambda cfg: -cfg.mean)
        assert ("hw='local'" in caplog.text) == warned, caplog.text


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
    space = search_space(model)
    ms = LatencyPredictor.for_hardware("cpu").predict_configs(model, SHAPE, [space.uniform(g) for g in space.grid])
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
    assert result.predicted_ms == pytest.approx(predictor.predict_config(model, SHAPE, result.best))
    assert result.dense_predicted_ms == pytest.approx(predictor.predict_config(model, SHAPE, search_space(
        model).dense()))
    assert result.score == proxy(result.best) and result.dense_score == 1.0
    assert (result.hw, result.estimated, result.proxy_name) == ("cpu", False, proxy.name)
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
    set_sparsity(model, search_space(model).uniform(0.3))
    before = model.block_sparsity
    report = result.validate("cpu", repeats=3, warmup=1, rounds=2)
    assert model.block_sparsity == before and not model.training
    assert report.dense_ms > 0 and report.sparse_ms > 0 and len(report.sparse_rounds_ms) == 2
    assert report.predicted_ms == result.predicted_ms and report.statistic == "p10_ms"
    assert report.threads == 1 and report.clock in ("wall", "cpu")  # as the shipped cpu predictor was measured
    assert report.ratio == pytest.approx(report.sparse_ms / result.predicted_ms)
    assert f"{report.speedup:.2f}x" in str(report)
    set_sparsity(model, search_space(model).dense())


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
    assert result.estimated == session.predictor.estimated and result.hw == "jetson-orin"
    if result.estimated:
        report = result.validate("cpu", repeats=2, warmup=0, rounds=1)
        assert not report.comparable and "estimated" in report.note
        assert "ESTIMATED" in result.summary()


def test_session_refuses_an_unknown_target_a_foreign_space_and_bad_shapes(model, proxy):
    with pytest.raises(ValueError, match="known targets"):
        SearchSession(model, "tpu-v9", proxy=proxy, input_shape=SHAPE)
    with pytest.raises(ValueError, match="search_space"):
        SearchSession(model, "cpu", proxy=proxy, input_shape=SHAPE, space=SearchSpace((2, 2, 6, 2), "other"))
    with pytest.raises(ValueError, match="has 1 channels, but the model takes 3"):
        SearchSession(model, "cpu", proxy=proxy, input_shape=(1, 1, 64, 64))
    with pytest.raises(ValueError, match="every size >= 1"):
        SearchSession(model, "cpu", proxy=proxy, input_shape=(0, 3, 64, 64))


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
