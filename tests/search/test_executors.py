"""search/executors.py on a real local Ray cluster (2 CPUs, a custom resource test-hw): the same result as a local
search, failures retried then recorded, checkpoints resumed, profiling on a node chosen by resource, and clear
messages without Ray."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from sparsevit_sdk import SearchResult, SearchSession
from sparsevit_sdk.cli.profile import main as profile_main
from sparsevit_sdk.cli.search import main as search_main
from sparsevit_sdk.dataset import load_profiles, read_fingerprint
from sparsevit_sdk.profiler import SweepSettings
from sparsevit_sdk.profiler.remote import profile_on_ray
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search import SearchEngine
from sparsevit_sdk.search.checkpoint import read_checkpoint
from sparsevit_sdk.search.executors import ProcessExecutor, RayExecutor, resolve_executor

from ..conftest import RAY
from .test_engine import Quadratic, latency

ray = pytest.importorskip("ray")
pytestmark = RAY  # one Ray at a time on a worker: beside the session's cluster, not on another worker's cores

SHAPE = (1, 3, 112, 112)


HW = "test-hw"


FAST = SweepSettings(warmup=1, repeats=2, model_repeats=2, random_configs=2)


SWEEP = dict(resolutions=["64x64"], settings=FAST, grid=(0.0, 0.5))


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, resources={HW: 1}, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


def session(model, proxy, **kwargs) -> SearchSession:
    settings = dict(latency_budget=0.9, proxy=proxy, input_shape=SHAPE, population=6, parents=2, generations=2,
                    progress=False)
    return SearchSession(model, "cpu", **{**settings, **kwargs})


def same(a, b) -> None:
    assert a.best == b.best and a.score == b.score and a.predicted_ms == b.predicted_ms
    pd.testing.assert_frame_equal(a.history, b.history)
    pd.testing.assert_frame_equal(a.progress, b.progress)


@pytest.fixture(scope="module")
def local(micro, proxy):
    return session(micro, proxy).run()


@pytest.mark.slow
def test_ray_search_equals_the_local_one(cluster, micro, proxy, local):
    with RayExecutor() as executor:
        same(session(micro, proxy, executor=executor).run(), local)
    assert ray.is_initialized()  # closing leaves a cluster it did not start running


class Flaky(Quadratic):
    """Fails one config: always (``raises``), or by killing its worker process on the first
    attempt only (a marker file tells later attempts, in other processes, it happened)."""

    def __init__(self, target, marker: Path, *, kill: bool = False) -> None:
        super().__init__()
        self.target, self.marker, self.kill = target, marker, kill

    def __call__(self, cfg):
        if cfg == self.target:
            with open(self.marker, "a") as f:
                f.write(f"{os.getpid()}\n")
            if not self.kill:
                raise RuntimeError("calibration batch unreadable")
            if len(self.marker.read_text().split()) == 1:
                os._exit(1)
        return super().__call__(cfg)


def evolve(space, proxy, **kwargs) -> SearchEngine:
    return SearchEngine(space, latency, proxy, latency_budget=0.7, population=12, parents=4, generations=3, seed=0,
                        **kwargs)


def test_a_raising_candidate_is_retried_then_recorded_failed(cluster, swin_t_space, tmp_path):
    target = swin_t_space.uniform(0.5)  # feasible and in the first population, not a reference
    marker = tmp_path / "attempts"
    out = evolve(swin_t_space, Flaky(target, marker), executor=RayExecutor(), retries=2).run()
    assert len(marker.read_text().split()) == 3  # the first attempt and two retries, on Ray workers
    row = out.history.set_index("config").loc[str(target)]
    assert pd.isna(row["score"]) and "RuntimeError: calibration batch unreadable" in row["error"]
    assert out.history.drop(index=out.history.index[out.history["config"] == str(target)])["error"].isna().all()
    assert len(out.progress) == 4 and out.best != target  # the search went on


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ray", "process"])
def test_a_dead_worker_is_retried_and_changes_nothing(cluster, swin_t_space, tmp_path, kind):
    target = swin_t_space.uniform(0.5)
    reference = evolve(swin_t_space, Quadratic()).run()
    marker = tmp_path / "deaths"
    executor = RayExecutor() if kind == "ray" else ProcessExecutor(2)
    with executor:
        out = evolve(swin_t_space, Flaky(target, marker, kill=True), executor=executor).run()
    assert len(marker.read_text().split()) == 2  # killed once, then scored
    pd.testing.assert_frame_equal(out.history, reference.history)


class Interrupting:
    """The proxy, until Ctrl-C arrives at its ``after``-th call."""

    def __init__(self, proxy, after: int) -> None:
        self.proxy, self.after, self.name, self.calls = proxy, after, proxy.name, 0

    def __call__(self, cfg):
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return self.proxy(cfg)


@pytest.mark.slow
def test_an_interrupted_search_resumes_on_ray_to_the_same_result(cluster, micro, proxy, local, tmp_path):
    path = tmp_path / "search.ckpt.json"
    with pytest.raises(KeyboardInterrupt):
        session(micro, Interrupting(proxy, after=12), checkpoint=path).run()
    state, _ = read_checkpoint(path)
    assert 0 <= state.generation < 2
    resumed = SearchSession.resume(path, micro, proxy=proxy, executor="ray", progress=False).run()
    same(resumed, local)
    assert read_checkpoint(path)[0].generation == 2
    again = SearchSession.resume(path, micro, proxy=proxy, progress=False)  # a finished search: no more work
    same(again.run(), local)
    with pytest.raises(ValueError, match="pass proxy="):
        SearchSession.resume(path, micro, proxy=Quadratic(), progress=False)


def test_search_cli_on_ray_with_checkpoint_and_resume(cluster, micro, tmp_path, capsys):
    ckpt, first, second = tmp_path / "s.ckpt.json", tmp_path / "a.json", tmp_path / "b.json"
    common = ["--model", "swin_micro", "--no-progress"]
    assert search_main([*common, "--budget", "0.9", "--resolution", "112x112", "--population", "4", "--parents", "2",
                        "--generations", "1", "--executor", "ray", "--checkpoint", str(ckpt), "--out", str(first),
                        "--seed", "3", "--proxy-images", "2"]) == 0
    # the resumed proxy takes the checkpoint's seed and input size: the same images without repeating them
    assert search_main([*common, "--resume", str(ckpt), "--out", str(second), "--proxy-images", "2"]) == 0
    a, b = (SearchResult.load(p, model=micro) for p in (first, second))
    assert a.best == b.best and a.history.equals(b.history)
    assert search_main([*common, "--resume", str(tmp_path / "a.json"), "--out", str(second)]) == 2
    assert "not a sparsevit search checkpoint" in capsys.readouterr().err


def test_profiling_runs_on_the_node_with_the_resource(cluster, tmp_path):
    rows = profile_on_ray("swin_micro", hw=HW, out=tmp_path, **SWEEP)
    data = load_profiles(tmp_path / HW)
    assert len(rows) == len(data) > 0 and set(data["hw"]) == {HW}
    assert read_fingerprint(tmp_path / HW)["fingerprint_id"] == data["fingerprint_id"].iloc[0]
    assert len(profile_on_ray("swin_micro", hw=HW, out=tmp_path, resume=True, **SWEEP)) == 0  # nothing left to do
    with pytest.raises(ValueError, match="resources '{\"jetson-orin\": 1}'"):
        profile_on_ray("swin_micro", hw="jetson-orin", out=tmp_path, **SWEEP)


def test_profile_cli_through_ray(cluster, tmp_path, capsys):
    code = profile_main(["--ray-address", "auto", "--hw", HW, "--model", "swin_micro", "--resolution", "64x64",
                         "--quick", "--configs", "1", "--out", str(tmp_path)])
    assert code == 0 and "new measurements" in capsys.readouterr().out
    assert profile_main(["--ray-address", "auto", "--model", "swin_micro", "--out", str(tmp_path)]) == 2
    assert "needs --hw" in capsys.readouterr().err


def test_missing_ray_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    for make in (RayExecutor, lambda: resolve_executor("ray")):
        with pytest.raises(ImportError, match=r"pip install 'sparsevit-sdk\[ray\]'"):
            make()
    assert profile_main(["--ray-address", "auto", "--hw", HW, "--model", "swin_micro", "--out", str(tmp_path)]) == 2
    assert "pip install 'sparsevit-sdk[ray]'" in capsys.readouterr().err


def test_process_pool_refuses_no_workers():
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        ProcessExecutor(0)


def test_an_unreachable_ray_address_fails_in_seconds(tmp_path, capsys):
    pytest.importorskip("ray")
    from sparsevit_sdk.search.executors import RayExecutor

    with pytest.raises(ConnectionError, match=r"cannot reach a Ray cluster at '127.0.0.1:1' .*ray start --head"):
        RayExecutor("127.0.0.1:1")
    code = search_main(["--model", "swin_micro", "--executor", "ray", "--ray-address", "127.0.0.1:1", "--out",
                        str(tmp_path / "r.json"), "--no-progress"])
    assert code == 2 and "cannot reach a Ray cluster at '127.0.0.1:1'" in capsys.readouterr().err
