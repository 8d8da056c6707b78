"""HTTP connections under hostile clients, against a live ``patrol run`` (F4).

Idle connections, heads trickled byte by byte, bodies that never come, readers that
stop reading, and more connections than Patrol has descriptors: none of them may turn
real requests into 503s, starve the pings that keep apps alive, or keep a crashed app
from being restarted. Every test uses a short ``http.client-timeout`` so it stays fast.
"""

from __future__ import annotations

import http.client
import os
import resource
import selectors
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from patrol.testing import UNITTEST_ENV, PatrolFactory, PatrolProcess, wait_for
from patrol.web.protocols import PARSER_ENV

TOKEN = "tok-" + os.urandom(12).hex()
SECRET = "ping-" + os.urandom(8).hex()
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True, params=["httptools", "h11"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every defence, over both HTTP parsers (patrol run inherits the environment)."""
    monkeypatch.setenv(PARSER_ENV, request.param)
    return str(request.param)


def address(p: PatrolProcess) -> tuple[str, int]:
    host, _, port = p.http.rpartition(":")
    return host, int(port)

def logged(p: PatrolProcess, text: str) -> bool:
    """Is ``text`` in Patrol's log? (A function: pytest would diff the whole log.)"""
    return text in p.log()



def raw_request(p: PatrolProcess, data: bytes, timeout: float) -> tuple[int, bytes]:
    """Send ``data`` on a new connection; (status, whole answer). The answer must come
    within ``timeout`` seconds (a socket timeout: a hang fails the test)."""
    with socket.create_connection(address(p), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12]), answer


def read_response(sock: socket.socket) -> int:
    """Read one whole answer from a kept-alive connection; its status."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status


def get(path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Does Patrol close ``sock`` within ``within`` seconds (EOF or reset)?"""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class IdleFlood:
    """``count`` connections that send nothing; closed ones are opened again (a
    persistent attacker), so the flood stays ``count`` strong."""

    def __init__(self, target: tuple[str, int], count: int) -> None:
        self.target = target
        self.count = count
        self.selector = selectors.DefaultSelector()
        self.reopened = 0
        for _ in range(count):
            self._open()

    def _open(self) -> None:
        sock = socket.create_connection(self.target, timeout=5)
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)

    def top_up(self) -> None:
        """Open a new connection for every one Patrol closed."""
        for key, _ in self.selector.select(timeout=0):
            sock = key.fileobj
            try:
                data = sock.recv(4096)  # type: ignore[union-attr]
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if not data:
                self.selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                self._open()
                self.reopened += 1

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()


@pytest.fixture
def flood_room() -> Iterator[None]:
    """Enough descriptors in this process for the floods (the soft limit may be 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if wanted < 2500:
        pytest.skip(f"this test needs 2,500 descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def write_token(directory: Path) -> str:
    path = directory / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


def test_idle_connections_cannot_starve_requests_or_pings(patrol: PatrolFactory, flood_room: None) -> None:
    """600 connections that send nothing, opened again as soon as Patrol closes them,
    for longer than the ping timeout: requests (with the token) are answered, and the
    app kept alive by HTTP pings (with its secret, no token) is never expired.
    Before: every request got 503 while the connections stayed, and pinged apps were
    restarted."""
    timeout = 2.0
    pinger = patrol.app(3, name="Pinger", secret=SECRET,
                        env=[f"PATROL_SECRET={SECRET}", "TESTAPP_PING_DELAY=0.2", "TESTAPP_PING_EVERY=0.3"])
    config = patrol.config(apps={"pinger": pinger}, **{"ping-timeout": 5})
    config["http"].update({"auth": {"token-file": write_token(patrol.tmp_path)}, "client-timeout": timeout})
    p = patrol.start(config, env=UNITTEST_ENV)
    p.headers = dict(BEARER)
    first = wait_for(lambda: p.app("pinger").get("lastseen"), 10, "the pinger's first ping")
    wait_for(lambda: p.app("pinger")["lastseen"] != first, 10, "a later ping")
    pid = p.app("pinger")["pid"]
    flood = IdleFlood(address(p), 600)
    worst = 0.0
    try:
        # Longer than the ping-timeout (3 s: UNITTEST_ENV overrides the 5 above) and than the
        # client-timeout (so Patrol closes idle ones): an app whose pings starve would expire.
        attack_ends = time.monotonic() + 5.0
        while time.monotonic() < attack_ends:
            started = time.monotonic()
            status, _ = raw_request(p, get("/status/", BEARER), timeout + 1)  # answered within timeout + 1 s
            assert status == 200
            worst = max(worst, time.monotonic() - started)
            flood.top_up()
        assert flood.reopened >= 1, "Patrol closed none of the idle connections"
    finally:
        flood.close()
    entry = p.app("pinger")
    assert entry["pid"] == pid and entry["state"] == "running" and not entry.get("restarts"), entry
    print(f"600 idle connections: slowest answer {worst:.3f} s (client-timeout {timeout:g} s), "
          f"{flood.reopened} idle connections closed by Patrol")


def test_a_request_must_arrive_within_the_client_timeout(patrol: PatrolFactory) -> None:
    """Slow loris: silence, a head trickled byte by byte, a body that never comes,
    and an idle keep-alive connection are closed at the deadline; bytes trickled in do
    not extend it. Before: all of them stayed open for ever (but the keep-alive one)."""
    timeout = 1.0
    config = patrol.config(apps={"web": patrol.app(1, name="Web")})
    config["http"]["client-timeout"] = timeout
    p = patrol.start(config)
    with socket.create_connection(address(p)) as silent:
        assert closed_by_peer(silent, timeout + 1.5), "a silent connection stayed open"
    with socket.create_connection(address(p)) as loris:
        head = b"GET /status/ HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: loris\r\n" * 50 + b"\r\n"
        started, closed = time.monotonic(), False
        for byte in head:  # one byte every 50 ms: the head would take 40 s
            try:
                loris.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_by_peer(loris, 0.05):
                closed = True
                break
        assert closed, "a head trickled byte by byte kept its connection"
        assert time.monotonic() - started < timeout + 1.5, "the trickle extended the deadline"
    with socket.create_connection(address(p)) as upload:
        upload.sendall(b"POST /api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 100\r\n\r\n{\"id\":")
        assert closed_by_peer(upload, timeout + 1.5), "a body that never came kept its connection"
    with socket.create_connection(address(p)) as kept:
        request = b"GET /status/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        for _ in range(3):  # keep-alive works: each request within the time
            kept.sendall(request)
            kept.settimeout(5)
            assert read_response(kept) == 200
        kept.sendall(b"GET /sta")  # then a head that never ends
        assert closed_by_peer(kept, timeout + 1.5), "a half-sent second request kept its connection"
    assert raw_request(p, get("/status/"), 5)[0] == 200  # honest clients are unaffected
    assert logged(p, '"event": "closed HTTP connections that sent no complete request in time"')


def test_at_the_cap_idle_connections_make_room_and_busy_ones_pause_accept(patrol: PatrolFactory) -> None:
    """With ``http.max-connections`` reached: idle connections are closed to admit new
    ones; when every connection is inside a request, new ones wait (not 503) until one
    is free. Before: 503 whenever connections, idle or not, reached the limit."""
    timeout, cap = 2.0, 8
    config = patrol.config(apps={"web": patrol.app(1, name="Web")})
    config["http"].update({"client-timeout": timeout, "max-connections": cap})
    p = patrol.start(config)
    idle = [socket.create_connection(address(p)) for _ in range(cap)]
    try:
        status, _ = raw_request(p, get("/status/"), timeout)  # before any idle one timed out
        assert status == 200
        assert any(closed_by_peer(s, 0.01) for s in idle), "no idle connection was closed to make room"
    finally:
        for s in idle:
            s.close()
    busy = [socket.create_connection(address(p)) for _ in range(cap)]
    try:
        for s in busy:  # a complete head, a body still to come: inside a request
            s.sendall(b"POST /api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50\r\n\r\n{")
        with socket.create_connection(address(p)) as late:
            late.sendall(get("/status/"))
            late.settimeout(timeout / 4)
            with pytest.raises(socket.timeout):
                late.recv(65536)  # not accepted yet: no 503, no answer while all are busy
            late.settimeout(timeout + 1)
            assert late.recv(65536).startswith(b"HTTP/1.1 200")  # once the busy ones timed out
    finally:
        for s in busy:
            s.close()
    assert logged(p, '"event": "HTTP connection limit reached: new connections wait until one is free"')
    assert logged(p, '"event": "HTTP connection limit reached: closed idle connections to admit new ones"')


def test_connections_beyond_the_descriptor_limit_do_not_stop_restarts(patrol: PatrolFactory,
                                                                       flood_room: None) -> None:
    """1,100 idle connections against a Patrol limited to 1,024 descriptors: a
    crash-looping app keeps being restarted (never "Too many open files"), and Patrol's
    log stays small. Before: restarts failed and asyncio logged a traceback per failed
    accept() (42 MB in 10 s)."""
    crash = patrol.app(1, name="Crash", env=["TESTAPP_EXIT=1"], **{"backoff-base": 0.1, "backoff-max": 0.2})
    config = patrol.config(apps={"crash": crash})
    config["http"]["client-timeout"] = 2
    p = patrol.start(config, env=UNITTEST_ENV)
    resource.prlimit(p.pid, resource.RLIMIT_NOFILE, (1024, 1024))
    wait_for(lambda: p.app("crash").get("restarts", 0) >= 2, 10, "the crash loop")
    log_before = p.log_path.stat().st_size
    sockets: list[socket.socket] = []
    try:
        for _ in range(1100):  # as many as the attacker gets (all of them, unless Patrol stops accepting)
            try:
                sockets.append(socket.create_connection(address(p), timeout=2))
            except OSError:
                break
        restarts = p.app("crash").get("restarts", 0)
        wait_for(lambda: p.app("crash").get("restarts", 0) >= restarts + 5, 10, "restarts during the flood")
        entry = p.app("crash")
        assert "Too many open files" not in entry.get("last-reason", ""), entry
    finally:
        for s in sockets:
            s.close()
    grown = p.log_path.stat().st_size - log_before
    assert grown < 100_000, f"Patrol's log grew by {grown} bytes during the flood"
    assert not logged(p, "Traceback") and not logged(p, "Too many open files")
    with open(f"/proc/{p.pid}/limits") as f:
        assert any(line.startswith("Max open files") and "1024" in line for line in f)
    print(f"1,100 idle connections at 1,024 descriptors: Patrol's log grew {grown} bytes")


def test_a_client_that_stops_reading_is_dropped(patrol: PatrolFactory) -> None:
    """A client that asks for a large file and never reads it must not hold its
    connection (and the file) for ever: after ``client-timeout`` without progress it
    is dropped. Before: it stayed, the answer half sent."""
    timeout = 1.0
    config = patrol.config(apps={"web": patrol.app(1, name="Web")})
    config["http"]["client-timeout"] = timeout
    p = patrol.start(config)
    logs = patrol.tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    size = 64 * 1024 * 1024
    with open(logs / "big.log", "wb") as f:
        f.truncate(size)  # sparse: no disk used
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(address(p))
        reader.sendall(get("/app/web/logs/big.log?raw=1"))
        reader.settimeout(5)
        first = reader.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first[:200]
        wait_for(lambda: logged(p, "dropped HTTP connections whose client stopped reading"), timeout + 5,
                 "the stalled reader to be dropped")
        received = len(first)
        reader.settimeout(5)
        try:
            while chunk := reader.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < size, "the whole file was sent to a client that did not read"
