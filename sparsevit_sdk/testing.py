"""Scaffolding for tests and benchmarks, not the SDK's own work: a Ray cluster of several nodes on this machine.

:class:`LocalCluster` starts each node with its own ``ray start`` (raylet, resources, OS-assigned ports), so a
search can be run across nodes and a node killed mid-search without a second machine; a watchdog process tears
the cluster down when its owner dies, however it dies.
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
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ._ray import child_env

NODE_START_TIMEOUT_S = 120.0  # `ray start` of one local node (about 6 s on an idle 2-core machine)
KILL_TIMEOUT_S = 10.0  # SIGKILLed processes gone from /proc (the kernel frees them in milliseconds)


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


def session_processes(sids: Iterable[int]) -> list[int]:
    """The pids of the live processes in sessions ``sids`` (Linux: read from /proc).  Zombies are
    left out: they hold no port or memory, and one whose parent died may wait for ever to be reaped."""
    sids, pids = set(sids), []
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):  # the process ended meanwhile, or is not ours to read
            state = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()[0]
            if state != "Z" and os.getsid(int(name)) in sids:
                pids.append(int(name))
    return pids


def kill_sessions(sids: Iterable[int], *, timeout_s: float = KILL_TIMEOUT_S) -> list[int]:
    """SIGKILL every process of sessions ``sids`` until none is left (one may start another while
    they die) or ``timeout_s`` passes; returns the pids still alive then."""
    sids, deadline = set(sids), time.monotonic() + timeout_s
    while (pids := session_processes(sids)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    return pids


def _watch(owner: TextIO) -> None:
    """Watchdog process of a :class:`LocalCluster`: read its temp dir, then each node's session as it
    starts, until the owner's end of the pipe closes (the owner stopped the cluster, or died however
    it died: even SIGKILL closes it); then kill what is left of those sessions and remove the temp dir."""
    temp_dir, *sids = owner.read().split()  # read() returns at end of file: when the owner's end closes
    kill_sessions(map(int, sids))
    shutil.rmtree(temp_dir, ignore_errors=True)


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
        """The pids of this node's live processes."""
        return session_processes([self.sid])

    def kill(self) -> list[int]:
        """SIGKILL every process of the node (a machine that lost power); returns the pids that outlived it."""
        return kill_sessions([self.sid])


class LocalCluster:
    """A Ray cluster of several nodes on this machine, each its own ``ray start``: what tests
    and benchmarks use to see a search on several nodes, and losing one.

    ``nodes`` gives each node's custom resources (the head first), e.g.
    ``[{}, {"jetson-orin": 1}]``; each node has ``num_cpus`` CPUs.  Nodes share this machine's
    address and differ by ports: every port a node opens (node manager, object manager, agents,
    metrics, and a list of worker ports) is one the OS reported free, so nodes never collide
    with each other or with another Ray on the machine.  :meth:`stop` kills the cluster's own
    processes by session, never ``ray stop`` (which stops every Ray of the machine's user).
    A watchdog process, in a session of its own, does the same when this process dies without
    calling :meth:`stop` (a crash, SIGKILL, a forgotten ``with``).
    """

    WORKER_PORTS = 32  # worker processes a node can run at once

    def __init__(self, nodes: Sequence[dict[str, float]] = ({}, {}), *, num_cpus: int = 1) -> None:
        self.specs, self.num_cpus = [dict(r) for r in nodes], num_cpus
        # short: Ray's socket paths under it must stay within the OS limit of 107 bytes
        self.temp_dir = tempfile.mkdtemp(prefix="svray-", dir="/tmp")
        self.port = _free_ports(1)[0]
        self.nodes: list[LocalNode] = []
        self.watchdog: subprocess.Popen | None = None

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

    def _tell_watchdog(self, line: str) -> None:
        """Send ``line`` to the watchdog, starting it first if need be."""
        if self.watchdog is None:
            self.watchdog = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                             text=True, start_new_session=True, env=child_env())
            self._tell_watchdog(self.temp_dir)
        assert self.watchdog.stdin is not None
        self.watchdog.stdin.write(f"{line}\n")
        self.watchdog.stdin.flush()

    def add_node(self, resources: dict[str, float] | None = None) -> LocalNode:
        """Start one more node (the head, if none runs yet) and wait until its ``ray start`` is done."""
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
        self._tell_watchdog(str(node.sid))
        try:
            out, _ = proc.communicate(timeout=NODE_START_TIMEOUT_S)
        except subprocess.TimeoutExpired as err:
            raise TimeoutError(f"`ray start` of node {len(self.nodes)} ({'head' if head else 'worker'}) did not "
                               f"finish within {NODE_START_TIMEOUT_S:g} s; its logs are in {self.temp_dir}/"
                               "session_latest/logs (a machine this loaded needs fewer nodes, or a larger "
                               "NODE_START_TIMEOUT_S)") from err
        if proc.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{out[-2000:]}")
        return node

    def stop(self) -> None:
        """Kill every node's processes (workers first, the head last), end the watchdog and remove the
        temp dir; a RuntimeError names any process that SIGKILL did not end."""
        left = [pid for node in reversed(self.nodes) for pid in node.kill()]
        self.nodes = []
        if self.watchdog is not None:
            try:
                self.watchdog.communicate(timeout=2 * KILL_TIMEOUT_S)  # closes its pipe: its cue to clean up and exit
            except subprocess.TimeoutExpired:
                self.watchdog.kill()  # stuck: there was nothing left for it to kill, and the temp dir goes below
                self.watchdog.wait()
            self.watchdog = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        if left:
            raise RuntimeError(f"processes {left} of the local Ray cluster outlived SIGKILL for {KILL_TIMEOUT_S:g} s "
                               f"(stuck in the kernel?); see `ps -o pid,stat,wchan,cmd -p {','.join(map(str, left))}`")

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ray_command() -> str:
    """The ``ray`` CLI of this interpreter's environment (a venv's ``bin`` need not be on PATH)."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.is_file() else (shutil.which("ray") or "ray")


if __name__ == "__main__":  # the watchdog above: `python -m sparsevit_sdk.testing` (its owner on stdin)
    _watch(sys.stdin)
