"""_ray.py's bounds: an address where no Ray GCS answers (nothing, a gRPC service that is not Ray, an HTTP/2 server
that never answers; RAY_ADDRESS where no address is given) is refused within the deadline, naming the address, what
answered and the fix; a LocalCluster
whose owner is SIGKILLed leaves no process and no temp dir behind.  Real servers on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparsevit_sdk._ray import check_ray_address
from sparsevit_sdk.cli.search import main as search_main
from sparsevit_sdk.testing import session_processes

ray = pytest.importorskip("ray")
from sparsevit_sdk.search.executors import RayExecutor  # noqa: E402  (after the skip: it needs Ray)

SETTINGS, HEADERS, PING = 4, 1, 6  # HTTP/2 frame types
END_STREAM_AND_HEADERS, ACK = 5, 1


def frame(kind: int, flags: int, stream: int = 0, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def header(name: bytes, value: bytes) -> bytes:
    """HPACK: a literal header field, not indexed, without Huffman coding."""
    return bytes([0, len(name)]) + name + bytes([len(value)]) + value


# a gRPC trailers-only reply: :status 200 (static table index 8), grpc-status 12 (UNIMPLEMENTED)
UNIMPLEMENTED = b"\x88" + header(b"content-type", b"application/grpc") + header(b"grpc-status", b"12") + header(
    b"grpc-message", b"unknown service")


def serve(conn: socket.socket, answer: bool) -> None:
    """One connection: SETTINGS, then (``answer``) what any gRPC server that is not Ray says to a call."""
    with conn, contextlib.suppress(OSError):  # clients hang up as they please, resets included
        conn.sendall(frame(SETTINGS, 0))
        buffer = b""
        while data := conn.recv(65536):
            buffer += data
            buffer = buffer.removeprefix(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            while len(buffer) >= 9 and len(buffer) >= 9 + (size := int.from_bytes(buffer[:3], "big")):
                kind, flags, stream = buffer[3], buffer[4], int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                payload, buffer = buffer[9:9 + size], buffer[9 + size:]
                if not answer:
                    continue
                if kind == SETTINGS and not flags & ACK:
                    conn.sendall(frame(SETTINGS, ACK))
                elif kind == PING and not flags & ACK:
                    conn.sendall(frame(PING, ACK, 0, payload))
                elif kind == HEADERS:
                    conn.sendall(frame(HEADERS, END_STREAM_AND_HEADERS, stream, UNIMPLEMENTED))


@contextlib.contextmanager
def http2_server(answer: bool) -> Iterator[str]:
    """A loopback HTTP/2 server's address, for the block's duration (at most 30 s a connection)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(30)
            threading.Thread(target=serve, args=(conn, answer), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join()
        listener.close()


def test_a_grpc_service_that_is_not_ray_is_refused_naming_what_answered(tmp_path, capsys):
    with http2_server(answer=True) as address:
        message = (rf"'{address}' answers HTTP/2, but not as a Ray GCS \(asked for its cluster id: .*unknown service"
                   r".*\); give the head's GCS address HOST:6379")
        with pytest.raises(ConnectionError, match=message):
            RayExecutor(address)
        code = search_main(["--model", "swin_micro", "--executor", "ray", "--ray-address", address, "--out",
                            str(tmp_path / "r.json"), "--no-progress"])
    assert code == 2 and f"'{address}' answers HTTP/2, but not as a Ray GCS" in capsys.readouterr().err


@pytest.mark.parametrize("given", [None, "auto"])
def test_ray_address_in_the_environment_is_checked_where_no_address_is_given(monkeypatch, given):
    with http2_server(answer=True) as address:
        monkeypatch.setenv("RAY_ADDRESS", address)  # what ray.init(None or "auto") would connect to
        with pytest.raises(ConnectionError, match=rf"the environment's RAY_ADDRESS: '{address}' answers HTTP/2, but "
                                                  r"not as a Ray GCS .*; or unset it"):
            check_ray_address(given)


def test_an_http2_server_that_never_answers_is_refused_at_the_deadline():
    with http2_server(answer=False) as address, pytest.raises(
            ConnectionError, match=rf"'{address}' answers HTTP/2, but not as a Ray GCS \((asked for its cluster id: "
                                   r".*Deadline Exceeded|it gave no cluster id within 7 s)\); give .*HOST:6379"):
        check_ray_address(address, timeout_s=2)


def test_a_closed_port_is_refused_naming_the_address():
    with socket.create_server(("127.0.0.1", 0)) as closed:
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    with pytest.raises(ConnectionError, match=rf"cannot reach a Ray cluster at '{address}' .*ray start --head"):
        RayExecutor(address)


OWNER = """import json, sys, time
from sparsevit_sdk.testing import LocalCluster
cluster = LocalCluster([{}, {}]).start()
print(json.dumps({"sids": [n.sid for n in cluster.nodes], "temp_dir": cluster.temp_dir, "address": cluster.address,
                  "watchdog": cluster.watchdog.pid}), flush=True)
time.sleep(600)
"""


@pytest.mark.slow  # two `ray start`s: ~10 s
def test_a_local_cluster_goes_when_its_owner_is_killed():
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    try:
        line = owner.stdout.readline()  # bounded: LocalCluster.start has its own timeouts, and the owner exits
        started = json.loads(line)
        # counted while the owner lives: once it is killed the watchdog starts stopping them within a second
        up = session_processes(started["sids"])
    finally:
        os.kill(owner.pid, signal.SIGKILL)  # no stop(), no atexit, no finally: a crash
        owner.wait()
    sessions = [*started["sids"], started["watchdog"]]  # the watchdog leads a session of its own
    assert len(up) >= 4  # a GCS and two raylets, at least, were up
    deadline = time.monotonic() + 30
    while (session_processes(sessions) or Path(started["temp_dir"]).exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session_processes(sessions) == []
    assert not Path(started["temp_dir"]).exists()
    with pytest.raises(ConnectionError, match="cannot reach a Ray cluster"):
        check_ray_address(started["address"], timeout_s=2)
