"""Ask a daemon for its status, from outside: readiness, and the timed full query.

Run by the benchmark with the Python of the peers' throwaway environment (circus only
answers over ZeroMQ, so this needs pyzmq; the others need only the standard library)::

    python query.py KIND ENDPOINT ready N TIMEOUT   # until N apps run; exit 1 on timeout
    python query.py KIND ENDPOINT time COUNT PAUSE  # COUNT timed full status queries

KIND is patrol, supervisor, circus or pm2 (ENDPOINT: the path of its rpc.sock). A timed query starts before the connection is
opened and ends when the last byte of the reply has arrived; decoding the reply is not
timed, so no client-side parser is measured. Results are one JSON object on stdout.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
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


# -- pm2: axon RPC over a Unix socket --------------------------------------------------
#
# pm2's command-line client talks to its God daemon through pm2-axon's request/reply
# sockets with axon-rpc on top. Every message is an AMP frame: one byte (protocol
# version 1 in the high nibble, argument count in the low one), then per argument a
# 32-bit big-endian length and the bytes, each argument tagged "s:" (string) or "j:"
# (JSON). A request is [j:{"type":"call","method":M,"args":[...]}, s:<request id>]; the
# reply is [j:{"args":[...]} or j:{"error":...}, s:<the same id>].

AMP_VERSION = 1


def amp_encode(args: list[bytes]) -> bytes:
    if len(args) > 15:
        raise ValueError("an AMP frame holds at most 15 arguments")
    return bytes([AMP_VERSION << 4 | len(args)]) + b"".join(struct.pack(">I", len(a)) + a for a in args)


def amp_read(sock: socket.socket) -> bytes:
    """One whole AMP frame from ``sock``, undecoded (the reply's bytes, as for the other daemons)."""
    buf = bytearray()

    def need(size: int) -> None:
        while len(buf) < size:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("pm2 closed the connection in the middle of a reply")
            buf.extend(chunk)

    need(1)
    offset = 1
    for _ in range(buf[0] & 0x0F):
        need(offset + 4)
        offset += 4 + struct.unpack_from(">I", buf, offset)[0]
        need(offset)
    return bytes(buf[:offset])


def amp_decode(raw: bytes) -> list[bytes]:
    """The arguments of one AMP frame."""
    argc, offset, args = raw[0] & 0x0F, 1, []
    for _ in range(argc):
        (size,) = struct.unpack_from(">I", raw, offset)
        if offset + 4 + size > len(raw):
            raise ValueError("truncated AMP frame")
        args.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return args


def axon_unpack(arg: bytes) -> Any:
    """An axon argument: "j:" JSON, "s:" string, anything else raw bytes."""
    if arg[:2] == b"j:":
        return json.loads(arg[2:])
    if arg[:2] == b"s:":
        return arg[2:].decode()
    return arg


def pm2_call(endpoint: str, method: str, *args: Any) -> bytes:
    """One RPC on a fresh connection, as every ``pm2`` command makes; the reply's raw frame."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    try:
        sock.connect(endpoint)
        call_id = f"bench:{uuid.uuid4().hex}"
        call = json.dumps({"type": "call", "method": method, "args": list(args)}).encode()
        sock.sendall(amp_encode([b"j:" + call, b"s:" + call_id.encode()]))
        raw = amp_read(sock)  # one call per connection, so the one reply: checked to be ours anyway
        parts = amp_decode(raw)
        if not parts or axon_unpack(parts[-1]) != call_id:
            raise RuntimeError(f"pm2 answered another request than {call_id}")
        return raw
    finally:
        sock.close()


def pm2_raw(endpoint: str) -> bytes:
    return pm2_call(endpoint, "getMonitorData", {})


def pm2_processes(raw: bytes) -> list[dict[str, Any]]:
    """The process list of a getMonitorData reply (what ``pm2 jlist`` prints)."""
    reply = axon_unpack(amp_decode(raw)[0])
    if "error" in reply:
        raise RuntimeError(f"pm2: {reply['error']}")
    return list(reply["args"][0])


def pm2_running(raw: bytes) -> int:
    return sum(1 for proc in pm2_processes(raw) if proc.get("pm2_env", {}).get("status") == "online")


RAW: dict[str, Callable[[str], bytes]] = {"patrol": patrol_raw, "supervisor": supervisor_raw, "circus": circus_raw,
                                          "pm2": pm2_raw}


def running(kind: str, endpoint: str) -> int:
    if kind == "circus":
        return circus_running(b"", endpoint)
    raw = RAW[kind](endpoint)
    return {"patrol": patrol_running, "supervisor": supervisor_running, "pm2": pm2_running}[kind](raw)


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
