"""Ray is an optional dependency: import it on first use, with a message that says how to get it.

:class:`LocalCluster` starts a cluster of several Ray nodes on this machine, for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

INSTALL_HINT = "pip install 'sparsevit-sdk[ray]'"
CONNECT_TIMEOUT_S = 10.0  # how long an address may take to answer before it is called unreachable
# an HTTP/2 client preface and an empty SETTINGS frame: every gRPC server (a GCS, Ray Client) answers SETTINGS
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
NODE_START_TIMEOUT_S = 120.0  # `ray start` of one local node (about 6 s on an idle 2-core machine)


def require_ray(feature: str) -> ModuleType:
    """The ``ray`` module, or an ImportError naming ``feature`` and the install command."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"{feature} needs Ray, which is not installed; install it with: {INSTALL_HINT}") from err
    return ray


def check_reachable(address: str | None, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """A ConnectionError naming ``address`` unless something listens there within ``timeout_s``.

    ``ray.init(address=...)`` retries an unreachable cluster for minutes, in log lines of its
    own; one TCP connection says in seconds that no cluster is there, and an HTTP/2 greeting that
    what answers is no Ray cluster (a dashboard at :8265, say).  Only ``HOST:PORT`` and
    ``ray://HOST:PORT`` are probed: None, ``auto`` and other schemes are Ray's to resolve.
    """
    target = (address or "").removeprefix("ray://").rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or "://" in target:
        return
    where = ("the head's GCS address HOST:6379 (what `ray start --head` printed; from a node of the cluster) or "
             "ray://HOST:10001 (Ray Client, from any machine)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as conn:
            conn.sendall(HTTP2_PREFACE)
            reply = conn.recv(9)
    except OSError as err:
        reason = f"no answer within {timeout_s:g} s" if isinstance(err, TimeoutError) else str(err)
        raise ConnectionError(
            f"cannot reach a Ray cluster at {address!r} ({reason}); check the address ({where}) and that `ray start "
            "--head` runs there, or give no address to start a local cluster") from err
    if len(reply) < 4 or reply[3] != 4:  # not an HTTP/2 SETTINGS frame: no gRPC server, so no Ray cluster
        what = "it speaks HTTP/1: a dashboard or jobs address?" if reply.startswith(b"HTTP/") else "no gRPC server"
        raise ConnectionError(f"{address!r} answers, but not as a Ray cluster ({what}); give {where}")


def init_ray(address: str | None, feature: str) -> ModuleType:
    """``ray.init(address=address)`` after :func:`check_reachable`: a wrong address fails in
    seconds with a message of ours instead of hanging."""
    ray = require_ray(feature)
    check_reachable(address)
    ray.init(address=address)
    return ray


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports the OS says are free now (all held open at once, so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class LocalNode:
    """One ``ray start`` of a :class:`LocalCluster`: its own raylet, resources and ports.

    The node is started as the leader of a new session, and every process it starts (raylet,
    agents, worker processes, which each take a process group of their own) stays in that
    session: ``sid`` reaches exactly this node's processes, never another cluster's.
    """

    sid: int
    resources: dict[str, float]
    head: bool

    def processes(self) -> list[int]:
        """The pids of this node's processes (Linux: read from /proc)."""
        pids = []
        for name in os.listdir("/proc"):
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                if os.getsid(int(name)) == self.sid:
                    pids.append(int(name))
        return pids

    def kill(self) -> int:
        """SIGKILL every process of the node (a machine that lost power); returns how many."""
        pids = self.processes()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)


class LocalCluster:
    """A Ray cluster of several nodes on this machine, each its own ``ray start``: what tests
    and benchmarks use to see a search on several nodes, and losing one.

    ``nodes`` gives each node's custom resources (the head first), e.g.
    ``[{}, {"jetson-orin": 1}]``; each node has ``num_cpus`` CPUs.  Nodes share this machine's
    address and differ by ports: every port a node opens (node manager, object manager, agents,
    metrics, and a list of worker ports) is one the OS reported free, so nodes never collide
    with each other or with another Ray on the machine.  :meth:`stop` kills the cluster's own
    processes by session, never ``ray stop`` (which stops every Ray of the machine's user).
    """

    WORKER_PORTS = 32  # worker processes a node can run at once

    def __init__(self, nodes: Sequence[dict[str, float]] = ({}, {}), *, num_cpus: int = 1) -> None:
        self.specs, self.num_cpus = [dict(r) for r in nodes], num_cpus
        # short: Ray's socket paths under it must stay within the OS limit of 107 bytes
        self.temp_dir = tempfile.mkdtemp(prefix="svray-", dir="/tmp")
        self.port = _free_ports(1)[0]
        self.nodes: list[LocalNode] = []

    @property
    def address(self) -> str:
        """The head's GCS address, what ``ray.init`` and ``RayExecutor`` take."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalCluster:
        try:
            for resources in self.specs:
                self.add_node(resources)
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self, resources: dict[str, float] | None = None) -> LocalNode:
        """Start one more node (the head, if none runs yet) and wait until it has joined."""
        head = not self.nodes
        agent, metrics, env_agent, grpc, manager, objects, *workers = _free_ports(6 + self.WORKER_PORTS)
        role = (["--head", f"--port={self.port}", "--include-dashboard=false"] if head else
                [f"--address={self.address}"])
        cmd = [_ray_command(), "start", *role, "--node-ip-address=127.0.0.1", f"--num-cpus={self.num_cpus}",
               f"--resources={json.dumps(resources or {})}", f"--temp-dir={self.temp_dir}",
               f"--node-manager-port={manager}", f"--object-manager-port={objects}",
               f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={grpc}",
               f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={env_agent}",
               f"--worker-port-list={','.join(map(str, workers))}", "--disable-usage-stats"]
        # Ray 2.60 turns token auth on for a head where ~/.ray/auth_token exists, but `ray start
        # --address` does not send the token: a throwaway cluster does without (unless the caller says)
        env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
        proc = subprocess.Popen(cmd, start_new_session=True, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        node = LocalNode(proc.pid, dict(resources or {}), head)
        self.nodes.append(node)  # before waiting: stop() reaches a node that never came up
        out, _ = proc.communicate(timeout=NODE_START_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{out[-2000:]}")
        return node

    def stop(self) -> None:
        """Kill every node's processes (workers first, the head last) and remove the temp dir."""
        for node in reversed(self.nodes):
            node.kill()
        self.nodes = []
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ray_command() -> str:
    """The ``ray`` CLI of this interpreter's environment (a venv's ``bin`` need not be on PATH)."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.is_file() else (shutil.which("ray") or "ray")
