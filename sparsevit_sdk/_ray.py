"""Ray is an optional dependency: import it on first use, with a message that says how to get it.

Every wait on the network here has a deadline, and its error names the fix: an address is
checked to be a Ray cluster's GCS before ``ray.init`` (which retries a wrong one for minutes).
A cluster of several nodes on this machine, for tests and benchmarks, is :mod:`sparsevit_sdk.testing`'s.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

INSTALL_HINT = "pip install 'sparsevit-sdk[ray]'"
CONNECT_TIMEOUT_S = 10.0  # how long an address may take to answer as a Ray cluster before it is refused
PROBE_START_S = 5.0  # more for the GCS probe's child to import Ray (1 s idle, 4 s on a loaded 2-core machine)
PROBE_UNSUPPORTED = 3  # the probe's exit status where this Ray has no standalone GCS client: ray.init decides
# an HTTP/2 client preface and an empty SETTINGS frame: every gRPC server (a GCS, Ray Client) answers SETTINGS
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
WHERE = ("the head's GCS address HOST:6379 (what `ray start --head` printed; from a node of the cluster) or "
         "ray://HOST:10001 (Ray Client, from any machine)")
HEARTBEAT_S = 2.0  # how often a wait on a Ray task checks that the cluster is still there


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
        probe = subprocess.run(cmd, capture_output=True, text=True, timeout=left + PROBE_START_S, env=child_env())
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


def child_env() -> dict[str, str]:
    """This environment, with this checkout first on the path: ``python -m sparsevit_sdk._ray`` runs this file."""
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}


if __name__ == "__main__":  # the probe's child process: `python -m sparsevit_sdk._ray probe ADDRESS DEADLINE`
    _probe(sys.argv[2], float(sys.argv[3]))
