"""Ask a daemon for its status, from outside: readiness, and the timed full query.

Run by the benchmark with the Python of the peers' throwaway environment (circus only
answers over ZeroMQ, so this needs pyzmq)::

    python query.py KIND ENDPOINT ready N TIMEOUT   # until N apps run; exit 1 on timeout
    python query.py KIND ENDPOINT time COUNT PAUSE  # COUNT timed full status queries

KIND is patrol, supervisor or circus. A timed query starts before the connection is
opened and ends when the last byte of the reply has arrived; decoding the reply is not
timed, so no client-side parser is measured. Results are one JSON object on stdout.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import uuid
import xmlrpc.client
from collections.abc import Callable
from typing import Any

TIMEOUT = 60.0
XMLRPC_BODY = xmlrpc.client.dumps((), "supervisor.getAllProcessInfo").encode()


def _http(endpoint: str, method: str, path: str, body: bytes | None = None) -> bytes:
    host, _, port = endpoint.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        headers = {"Content-Type": "text/xml"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}")
        return data
    finally:
        conn.close()


def patrol_raw(endpoint: str) -> bytes:
    return _http(endpoint, "GET", "/status/")


def patrol_running(raw: bytes) -> int:
    return sum(1 for app in json.loads(raw).get("apps", {}).values() if app.get("state") == "running")


def supervisor_raw(endpoint: str) -> bytes:
    return _http(endpoint, "POST", "/RPC2", XMLRPC_BODY)


def supervisor_running(raw: bytes) -> int:
    (infos,), _ = xmlrpc.client.loads(raw)
    return sum(1 for info in infos if info["statename"] == "RUNNING")


_zmq_context: Any = None


def circus_call(endpoint: str, command: str) -> bytes:
    """One command on a fresh DEALER socket, as ``circusctl`` does."""
    global _zmq_context
    import zmq

    if _zmq_context is None:
        _zmq_context = zmq.Context()
    sock = _zmq_context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(TIMEOUT * 1000))
    try:
        sock.connect(endpoint)
        call_id = uuid.uuid4().hex
        sock.send(json.dumps({"id": call_id, "command": command, "properties": {}}).encode())
        while True:
            reply = sock.recv()
            if json.loads(reply).get("id") == call_id:
                return reply
    finally:
        sock.close()


def circus_raw(endpoint: str) -> bytes:
    return circus_call(endpoint, "list")


def circus_running(_: bytes, endpoint: str = "") -> int:
    statuses = json.loads(circus_call(endpoint, "status")).get("statuses", {})
    return sum(1 for status in statuses.values() if status == "active")


RAW: dict[str, Callable[[str], bytes]] = {"patrol": patrol_raw, "supervisor": supervisor_raw, "circus": circus_raw}


def running(kind: str, endpoint: str) -> int:
    if kind == "circus":
        return circus_running(b"", endpoint)
    raw = RAW[kind](endpoint)
    return patrol_running(raw) if kind == "patrol" else supervisor_running(raw)


def ready(kind: str, endpoint: str, n: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        try:
            count = running(kind, endpoint)
        except (OSError, RuntimeError, xmlrpc.client.Error, ValueError):
            count = -1  # not listening yet
        if count >= n:
            print(json.dumps({"running": count}))
            return 0
        time.sleep(0.1)
    print(json.dumps({"running": count, "error": f"only {count} of {n} running after {timeout} s"}))
    return 1


def timed(kind: str, endpoint: str, count: int, pause: float) -> int:
    seconds, size = [], 0
    for i in range(count):
        if i:
            time.sleep(pause)  # pacing: each query finds the daemon idle
        t0 = time.perf_counter()
        raw = RAW[kind](endpoint)
        seconds.append(time.perf_counter() - t0)
        size = len(raw)
    print(json.dumps({"seconds": seconds, "bytes": size}))
    return 0


def main(argv: list[str]) -> int:
    kind, endpoint, mode, *rest = argv
    if mode == "ready":
        return ready(kind, endpoint, int(rest[0]), float(rest[1]))
    if mode == "time":
        return timed(kind, endpoint, int(rest[0]), float(rest[1]))
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
