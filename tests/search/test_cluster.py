"""A search on a real two-node Ray cluster on this machine (each node its own `ray start`): the same result as a
local search, a lost worker node retried on the node left without scoring anything twice, a lost head stopping the
search with the checkpoint to resume from, and bad input (address, resources, workers without the SDK) refused in
seconds.  The tests share the session's cluster (conftest: one worker runs every Ray test) and run in file order:
the last one kills its head."""

from __future__ import annotations

import collections
import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from sparsevit_sdk import SearchSession
from sparsevit_sdk._ray import check_ray_address
from sparsevit_sdk.profiler.timing import num_threads
from sparsevit_sdk.search.checkpoint import read_checkpoint
from sparsevit_sdk.search.executors import RayExecutor
from sparsevit_sdk.search.protocols import ExecutorError, ExecutorLost
from sparsevit_sdk.testing import LocalCluster, LocalNode

from ..conftest import CLUSTER_NODES, RAY
from .test_executors import same

ray = pytest.importorskip("ray")
pytestmark = RAY

SHAPE = (1, 3, 112, 112)
DELAY_S = 0.3  # per proxy call on the cluster: long enough to kill a node while a call runs there


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """The session's two nodes (conftest), the second with the resource node2."""
    assert [node.get("node2", 0) for node in CLUSTER_NODES] == [0, 1]
    return ray_cluster


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with num_threads(1):
        yield


class Logged:
    """``proxy``, padded to ``delay`` s, writing 'start RATIOS PID' and 'end RATIOS PID' lines into ``log``."""

    def __init__(self, proxy, log: Path, delay: float = 0.0) -> None:
        self.proxy, self.log, self.delay, self.name = proxy, log, delay, proxy.name

    def _write(self, what: str, cfg) -> None:
        with open(self.log, "a") as f:
            f.write(f"{what} {','.join(map(str, cfg.ratios))} {os.getpid()}\n")

    def __call__(self, cfg):
        self._write("start", cfg)
        time.sleep(self.delay)
        value = self.proxy(cfg)
        self._write("end", cfg)
        return value


def calls(log: Path) -> dict[str, list[tuple[str, int]]]:
    """(ratios, pid) of each call's start and end."""
    out = collections.defaultdict(list)
    for line in log.read_text().splitlines() if log.exists() else []:
        what, ratios, pid = line.split()
        out[what].append((ratios, int(pid)))
    return out


def search(model, proxy, **kwargs) -> SearchSession:
    return SearchSession(model, "cpu", latency_budget=0.9, proxy=proxy, input_shape=SHAPE, population=6, parents=2,
                         generations=3, seed=0, progress=False, **kwargs)


@pytest.fixture(scope="module")
def local(micro, proxy, tmp_path_factory):
    return search(micro, Logged(proxy, tmp_path_factory.mktemp("local") / "calls")).run()


def kill_when(node: LocalNode, ready, timeout_s: float = 60.0) -> threading.Thread:
    """A thread that kills ``node`` once ``ready()`` holds."""
    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        node.kill()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow  # a real 2-node cluster starts in ~5 s
def test_the_cluster_has_two_nodes_each_its_own_raylet(cluster):
    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) == 2 and sum(n["Resources"].get("node2", 0) for n in alive) == 1
    raylets = [[p for p in node.processes() if "raylet" in Path(f"/proc/{p}/cmdline").read_text()]
               for node in cluster.nodes]
    assert [len(r) for r in raylets] == [1, 1]


@pytest.mark.slow
def test_a_search_on_two_nodes_equals_the_local_one(cluster, micro, proxy, local, tmp_path):
    log = tmp_path / "calls"
    with RayExecutor() as executor:
        same(search(micro, Logged(proxy, log, DELAY_S), executor=executor).run(), local)
    sessions = {os.getsid(pid) for _, pid in calls(log)["end"] if Path(f"/proc/{pid}").exists()}
    assert sessions == {node.sid for node in cluster.nodes}  # both nodes scored


@pytest.mark.slow
def test_losing_a_worker_node_retries_its_calls_on_the_node_left(cluster, micro, proxy, local, tmp_path):
    log, worker = tmp_path / "calls", cluster.nodes[1]

    def running_there() -> bool:
        log_ = calls(log)
        return any(pid in worker.processes() for call in set(log_["start"]) - set(log_["end"]) for pid in [call[1]])

    killer = kill_when(worker, running_there)
    with RayExecutor() as executor:
        result = search(micro, Logged(proxy, log, DELAY_S), executor=executor, checkpoint=tmp_path / "s.json").run()
    killer.join()
    same(result, local)
    log_ = calls(log)
    ended = collections.Counter(ratios for ratios, _ in log_["end"])
    assert set(ended.values()) == {1}  # nothing scored twice: every config's call ended once
    assert len(ended) == result.evaluations
    assert result.retried == len(log_["start"]) - len(log_["end"]) >= 1  # the calls lost with the node
    assert f"{result.retried} proxy call(s) retried" in result.summary()
    deadline = time.monotonic() + 60  # the GCS marks the node dead after missed heartbeats
    while len([n for n in ray.nodes() if n["Alive"]]) > 1 and time.monotonic() < deadline:
        time.sleep(0.5)


def test_a_resource_no_node_has_is_refused_in_seconds(cluster, micro, proxy):
    start = time.monotonic()
    with pytest.raises(ExecutorError, match=r"no node of the Ray cluster has \{.*'jetson-orin': 1\}.*--resources "
                                            r"'\{\"jetson-orin\": 1\}'"):
        search(micro, proxy, executor=RayExecutor(resources={"jetson-orin": 1})).run()
    assert time.monotonic() - start < 10


BLOCKER = '''import sys
class NoSDK:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "sparsevit_sdk":
            raise ModuleNotFoundError("No module named 'sparsevit_sdk'", name=name)
sys.meta_path.insert(0, NoSDK())
'''


@pytest.mark.slow
def test_workers_without_the_sdk_are_told_what_to_install(cluster, micro, proxy, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)  # workers of this runtime_env cannot import the SDK
    executor = RayExecutor(runtime_env={"env_vars": {"PYTHONPATH": str(tmp_path)}})
    with pytest.raises(ExecutorError, match=r"cannot import sparsevit_sdk .*pip install -c constraints.txt -e \."):
        search(micro, proxy, executor=executor).run()


def test_an_address_that_is_no_ray_cluster_is_refused_at_once():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ConnectionError, match=r"answers, but not as a Ray cluster .*HOST:6379"):
            RayExecutor(f"127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()


def test_the_gcs_address_answers_as_a_ray_cluster(cluster):
    check_ray_address(cluster.address)  # its cluster id, asked for by Ray's own GCS client


@pytest.mark.slow
def test_losing_the_head_names_the_checkpoint_and_the_search_resumes_on_a_new_cluster(cluster, micro, proxy, local,
                                                                                     tmp_path):
    ckpt, log, log2 = tmp_path / "s.ckpt.json", tmp_path / "calls", tmp_path / "calls2"
    killer = kill_when(cluster.nodes[0], ckpt.exists)  # once a generation is checkpointed
    message = (rf"the Ray cluster at \S+:{cluster.port} was lost .*; resume with SearchSession.resume\('{ckpt}', "
               rf"model\) or sparsevit-search --resume {ckpt} on a new cluster")
    with RayExecutor() as executor, pytest.raises(ExecutorLost, match=message):
        search(micro, Logged(proxy, log, DELAY_S), executor=executor, checkpoint=ckpt).run()
    killer.join()
    assert not ray.is_initialized()  # disconnected, so Ray does not end this process when it gives up on the GCS
    state, _ = read_checkpoint(ckpt)
    with LocalCluster([{}]) as new, RayExecutor(new.address) as executor:
        resumed = SearchSession.resume(ckpt, micro, proxy=Logged(proxy, log2), executor=executor,
                                       progress=False).run()
    same(resumed, local)
    checkpointed = {",".join(map(str, ratios)) for ratios, _ in state.scores}
    assert checkpointed and not checkpointed & {ratios for ratios, _ in calls(log2)["start"]}
