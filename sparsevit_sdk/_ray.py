"""Ray is an optional dependency: import it on first use, with a message that says how to get it."""

from __future__ import annotations

import socket
from types import ModuleType

INSTALL_HINT = "pip install 'sparsevit-sdk[ray]'"
CONNECT_TIMEOUT_S = 10.0  # how long an address may take to answer before it is called unreachable


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
    own; one TCP connection says in seconds that no cluster is there.  Only ``HOST:PORT`` and
    ``ray://HOST:PORT`` are probed: None, ``auto`` and other schemes are Ray's to resolve.
    """
    target = (address or "").removeprefix("ray://").rstrip("/")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or "://" in target:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as err:
        reason = f"no answer within {timeout_s:g} s" if isinstance(err, TimeoutError) else str(err)
        raise ConnectionError(
            f"cannot reach a Ray cluster at {address!r} ({reason}); check the address (the head's GCS port, 6379 by "
            "default, or ray://HOST:10001 for Ray Client) and that `ray start --head` runs there, or give no address "
            "to start a local cluster") from err


def init_ray(address: str | None, feature: str) -> ModuleType:
    """``ray.init(address=address)`` after :func:`check_reachable`: a wrong address fails in
    seconds with a message of ours instead of hanging."""
    ray = require_ray(feature)
    check_reachable(address)
    ray.init(address=address)
    return ray
