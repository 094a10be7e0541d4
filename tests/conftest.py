"""Shared fixtures: small models and inputs keep the suite fast on a 2-core CPU."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from filelock import FileLock

from sparsevit_sdk import LatencyPredictor, build_model, search_space
from sparsevit_sdk import hardware as hardware_module
from sparsevit_sdk.dataset import load_profiles
from sparsevit_sdk.predictor import latency as latency_module
from sparsevit_sdk.profiler import SweepSettings, profile_model
from sparsevit_sdk.profiler.timing import num_threads

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Every test runs torch on one thread unless it asks for more (``threads=N``): these small models run
    fastest so, and on a shared, loaded 2-core machine two threads made a 1024x768 conversion check 4x
    slower (measured: 6.3 s vs 1.6 s)."""
    with num_threads(1):
        yield


TEST_CALIBRATION_S = 8.0


@pytest.fixture(scope="session", autouse=True)
def short_calibrations():
    """A calibration in a test stops after :data:`TEST_CALIBRATION_S` (a user's: after a minute or more): the tests
    check what a calibration does and records, and ``benchmarks/local_accuracy.py`` how good it gets.  Tests of
    the default itself call ``calibration.default_time_limit`` as imported."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("sparsevit_sdk.calibration.default_time_limit", lambda dense_ms: TEST_CALIBRATION_S)
        yield


@pytest.fixture(scope="session")
def micro():
    """A seeded swin_micro in eval mode; tests must reset any sparsity they set."""
    return build_model("swin_micro")


@pytest.fixture()
def micro_space(micro):
    return search_space(micro)


@pytest.fixture()
def image():
    return torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0))


# --- a small dataset measured here, and the predictor fitted on it (predictor/, cli/, test_hardware) ---


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder ``name`` that ``make(folder)`` fills once per test run, shared by every pytest-xdist
    worker (the first to ask makes it while the others wait; each would otherwise redo the same work).

    Only for what tests read and never change: a test that writes copies it to its own ``tmp_path``.
    """
    root = tmp_path_factory.getbasetemp()
    if root.name.startswith("popen-gw"):  # an xdist worker's base temp; their parent is the run's, shared
        root = root.parent
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
            make(folder)
            done.touch()
    return folder


def _profile_micro(out: Path) -> None:
    settings = SweepSettings(warmup=1, repeats=4, model_repeats=4, random_configs=12, rounds=2)
    profile_model("swin_micro", resolutions=["64", "96"], hw="cpu", out=out, settings=settings, threads=1,
                  clock="cpu", progress=False)


@pytest.fixture(scope="session")
def profile_dir(tmp_path_factory) -> Path:
    """swin_micro timed unit by unit and as whole models at two small resolutions, the way the
    shipped CPU profile was (one thread, thread CPU-time clock, quietest of two rounds); measured
    once per run, however many workers read it."""
    return made_once(tmp_path_factory, "profiles", _profile_micro) / "cpu"


@pytest.fixture(scope="session")
def measured(profile_dir) -> pd.DataFrame:
    return load_profiles(profile_dir)


@pytest.fixture(scope="session")
def fitted(measured) -> LatencyPredictor:
    return LatencyPredictor(n_estimators=100).fit(measured)


@pytest.fixture()
def shipped(fitted, tmp_path, monkeypatch):
    """Make the fitted predictor the only shipped one, as ``predictors/cpu.json``."""
    path = fitted.save(tmp_path / "cpu.json")
    for module in (hardware_module, latency_module):
        monkeypatch.setattr(module, "shipped_predictors", lambda: {"cpu": path})
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEVIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "predictors"


def _edit(doc: dict, dotted: str, value) -> dict:
    """A deep copy of ``doc`` with the field at ``dotted`` (``a.b.0``) set to ``value``, or
    deleted when ``value`` is ``...``."""
    doc = json.loads(json.dumps(doc))
    *parents, last = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    node = doc
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return doc


# --- one 2-node Ray cluster per worker, for every test that needs a real cluster ---

RAY = pytest.mark.xdist_group("ray")  # Ray tests share one worker (and so its cluster); each module adds it
CLUSTER_NODES = ({"cpu-1t": 1}, {"cpu-2t": 1, "node2": 1})  # test_fleet's two devices; test_cluster's node2
CLUSTER_CPUS = 2  # per node: test_fleet's 2-thread sweep reserves 2


class Clusters:
    """A :class:`LocalCluster` of :data:`CLUSTER_NODES` started on first use and kept for the session; a
    test that kills a node leaves it to be replaced at the next :meth:`get` (two ``ray start`` take ~5-10 s)."""

    def __init__(self) -> None:
        self.cluster = None

    def get(self):
        from sparsevit_sdk.testing import LocalCluster

        if self.cluster is not None and not all(node.processes() for node in self.cluster.nodes):
            self.stop()  # a test killed a node (their last tests kill the head)
        if self.cluster is None:
            self.cluster = LocalCluster(CLUSTER_NODES, num_cpus=CLUSTER_CPUS).start()
        return self.cluster

    def stop(self) -> None:
        if self.cluster is not None:
            cluster, self.cluster = self.cluster, None
            cluster.stop()


@pytest.fixture(scope="session")
def ray_clusters():
    pytest.importorskip("ray")
    clusters = Clusters()
    yield clusters
    clusters.stop()


@pytest.fixture(scope="module")
def ray_cluster(ray_clusters):
    """A live 2-node cluster this module's driver is connected to (``ray.init``) until the module ends."""
    ray = pytest.importorskip("ray")
    cluster = ray_clusters.get()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")  # as the cluster's nodes run
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            yield cluster
        finally:
            ray.shutdown()
