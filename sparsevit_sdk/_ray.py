"""Ray is an optional dependency: import it on first use, with a message that says how to get it.

Every wait on the network here has a deadline, and its error names the fix: an address is
checked to be a Ray cluster's GCS before ``ray.init`` (which retries a wrong one for minutes).
:class:`LocalCluster` starts a cluster of several Ray nodes on this machine, for tests and
benchmarks; a watchdog process tears it down when its owner dies, however it dies.
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
from types import ModuleType
from typing import TextIO

INSTALL_HINT = "pip install 'sparsevit-sdk[ray]'"
CONNECT_TIMEOUT_S = 10.0  # how long an address may take to answer as a Ray cluster before it is refused
PROBE_START_S = 5.0  # more for the GCS probe's child to import Ray (1 s idle, 4 s on a loaded 2-core machine)
PROBE_UNSUPPORTED = 3  # the probe's exit status where this Ray has no standalone GCS client: ray.init decides
# an HTTP/2 client preface and an empty SETTINGS frame: every gRPC server (a GCS, Ray Client) answers SETTINGS
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
WHERE = ("the head's GCS address HOST:6379 (what `ray start --head` printed; from a node of the cluster) or "
         "ray://HOST:10001 (Ray Client, from any machine)")
HEARTBEAT_S = 2.0  # how often a wait on a Ray task checks that the cluster is still there
NODE_START_TIMEOUT_S = 120.0  # `ray start` of one local node (about 6 s on an idle 2-core machine)
KILL_TIMEOUT_S = 10.0  # SIGKILLed processes gone from /proc (the kernel frees them in milliseconds)


def require_ray(feature: str) -> ModuleType:
    """The ``ray`` module, or an ImportError naming ``feature`` and the install command."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"{feature} needs Ray, which is not installed; install it with: {INSTALL_HINT}") from err
    return ray


def _host_port(address: str | None) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for None, ``auto`` and other schemes."""
    target = (address or "").removeprefix("ray://").rstrip("/")
    host, _, port = target.rpartition(":")
    return None if not host or not port.isdigit() or "://" in target else (host.strip("[]"), int(port))


def check_reachable(address: str | None, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """A ConnectionError naming ``address`` unless a gRPC server listens there within ``timeout_s``.

    One TCP connection says in seconds that nothing is there, and an HTTP/2 greeting that what
    answers is no Ray cluster (a dashboard at :8265, say).  Cheap enough to tell every few seconds
    whether a cluster is still there; :func:`check_ray_address` also asks the GCS who it is.
    Only ``HOST:PORT`` and ``ray://HOST:PORT`` are probed: None, ``auto`` and other schemes are Ray's.
    """
    where = _host_port(address)
    if where is None:
        return
    try:
        with socket.create_connection(where, timeout=timeout_s) as conn:
            conn.sendall(HTTP2_PREFACE)
            reply = conn.recv(9)
    except OSError as err:
        reason = f"no answer within {timeout_s:g} s" if isinstance(err, TimeoutError) else str(err)
        raise ConnectionError(
            f"cannot reach a Ray cluster at {address!r} ({reason}); check the address ({WHERE}) and that `ray start "
            "--head` runs there, or give no address to start a local cluster") from err
    if len(reply) < 4 or reply[3] != 4:  # not an HTTP/2 SETTINGS frame: no gRPC server, so no Ray cluster
        what = "it speaks HTTP/1: a dashboard or jobs address?" if reply.startswith(b"HTTP/") else "no gRPC server"
        raise ConnectionError(f"{address!r} answers, but not as a Ray cluster ({what}); give {WHERE}")


def check_ray_address(address: str | None, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """:func:`check_reachable`, then, for a ``HOST:PORT``, the GCS's cluster id asked for within
    what is left of ``timeout_s``: a ConnectionError naming the address, what answered and the fix.

    ``ray.init`` retries an address that speaks HTTP/2 but is no GCS (another gRPC service, a
    proxy) for minutes.  The question is asked by Ray's own GCS client in a child process, killed
    at the deadline (plus :data:`PROBE_START_S` for its start): a client stuck in Ray's C++ cannot
    hold this process, and a slow start cannot refuse a real GCS.  ``ray://`` addresses
    (a Ray Client server, no GCS) get the HTTP/2 check only; None and ``auto`` check what Ray
    takes for them from the environment, ``RAY_ADDRESS``, if set.
    """
    if address in (None, "auto") and os.environ.get("RAY_ADDRESS"):
        try:
            check_ray_address(os.environ["RAY_ADDRESS"], timeout_s=timeout_s)
        except ConnectionError as err:
            raise ConnectionError(f"the environment's RAY_ADDRESS: {err}; or unset it") from None
        return
    deadline = time.monotonic() + timeout_s
    check_reachable(address, timeout_s=timeout_s)
    if address is None or address.startswith("ray://") or _host_port(address) is None:
        return
    left = max(deadline - time.monotonic(), 0.1)
    cmd = [sys.executable, "-m", __name__, "probe", address, str(time.time() + left)]
    try:
        probe = subprocess.run(cmd, capture_output=True, text=True, timeout=left + PROBE_START_S, env=_child_env())
    except subprocess.TimeoutExpired:
        reason = f"it gave no cluster id within {timeout_s + PROBE_START_S:g} s"
    else:
        if probe.returncode in (0, PROBE_UNSUPPORTED):
            return
        reason = (probe.stdout.strip() or probe.stderr.strip() or f"exit {probe.returncode}").splitlines()[-1]
    raise ConnectionError(f"{address!r} answers HTTP/2, but not as a Ray GCS ({reason}); give {WHERE}")


def _probe(address: str, deadline: float) -> None:
    """Child process of :func:`check_ray_address`: print the GCS's cluster id, or why there is none.
    The question gets what is left until ``deadline`` (a time.time()), and a second at least."""
    try:
        from ray._raylet import InnerGcsClient

        connect = InnerGcsClient.standalone
    except (ImportError, AttributeError):  # a Ray older than this SDK's tests (2.60)
        sys.exit(PROBE_UNSUPPORTED)
    try:
        client = connect(address, None, int(max(deadline - time.time(), 1.0) * 1000))
    except Exception as err:  # Ray's RpcError and kin: the reason is all the parent needs
        print(f"asked for its cluster id: {err}")
        sys.exit(1)
    print(client.cluster_id)


def heartbeat_address(ray: ModuleType, address: str | None) -> str:
    """The address that tells whether the cluster this process is connected to is still there: the Ray
    Client server of a ``ray://`` address, else the GCS (what None or ``auto`` resolved to)."""
    if address is not None and address.startswith("ray://"):
        return address.removeprefix("ray://")
    return ray.get_runtime_context().gcs_address


def wait_ready(ray: ModuleType, ref: object, heartbeat: str) -> None:
    """Return once the task of ``ref`` is done; :func:`check_reachable`'s ConnectionError as soon as
    ``heartbeat`` stops answering.  Ray would wait on a lost head until its own connection to the
    GCS gives up, a minute later, and then end this process."""
    while not ray.wait([ref], timeout=HEARTBEAT_S)[0]:
        check_reachable(heartbeat, timeout_s=HEARTBEAT_S)


def init_ray(address: str | None, feature: str) -> ModuleType:
    """``ray.init(address=address)`` after :func:`check_ray_address`: a wrong address fails in
    seconds with a message of ours instead of hanging."""
    ray = require_ray(feature)
    check_ray_address(address)
    ray.init(address=address)
    return ray


def _child_env() -> dict[str, str]:
    """This environment, with this checkout first on the path: ``python -m sparsevit_sdk._ray`` runs this file."""
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}


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
            self.watchdog = subprocess.Popen([sys.executable, "-m", __name__, "watch"], stdin=subprocess.PIPE,
                                             text=True, start_new_session=True, env=_child_env())
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


if __name__ == "__main__":  # the child processes above: `python -m sparsevit_sdk._ray probe ADDRESS DEADLINE | watch`
    if sys.argv[1] == "probe":
        _probe(sys.argv[2], float(sys.argv[3]))
    else:
        _watch(sys.stdin)
