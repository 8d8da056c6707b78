"""Both HTTP parsers under hostile heads and pipelines, against a live ``patrol run``.

Patrol serves HTTP with httptools (llhttp, C) when it is installed, h11 otherwise
(``PATROL_HTTP_PARSER=h11``). uvicorn's httptools protocol lacks limits that h11 has:
it would take a request head of any size, and parse every request a client pipelines
into memory at once. patrol.web.protocols adds them; these tests hold both parsers to
the same rules, and check what llhttp cannot parse (a method it does not know) is
still answered as h11 answers it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import Iterator

import pytest

from patrol.testing import PatrolFactory, PatrolProcess
from patrol.web.protocols import MAX_HEAD, MAX_PIPELINE, PARSER_ENV

PARSERS = ["httptools", "h11"]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(PARSER_ENV, request.param)  # patrol run inherits the environment
    yield request.param


@pytest.fixture
def served(patrol: PatrolFactory, parser: str) -> PatrolProcess:
    """A Patrol whose deadline (30 s) is far beyond the tests' waits: a connection they
    see closed was closed by a limit, not by the deadline."""
    config = patrol.config(apps={"web": patrol.app(1, name="Web")})
    config["http"]["client-timeout"] = 30
    return patrol.start(config)


def connect(p: PatrolProcess) -> socket.socket:
    host, _, port = p.http.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=10)


def answer_to(sock: socket.socket, data: bytes, *, pieces: int = 1) -> bytes:
    """Send ``data`` (in ``pieces`` writes), then read until Patrol closes: all it said."""
    step = -(-len(data) // pieces)
    try:
        for start in range(0, len(data), step):
            sock.sendall(data[start:start + step])
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before the end: what it answered is still there to read
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class Answers:
    """Reads answers one after another from one connection (http.client's reader reads
    ahead into a buffer of its own: a second one would miss what the first took)."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def next(self) -> tuple[int, bytes]:
        status_line = self.file.readline()
        if not status_line:
            raise ConnectionError("closed before an answer")
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), self.file.read(length)


@pytest.mark.parametrize("pieces", [1, 8])
def test_a_head_that_does_not_end_within_16_kib_is_refused(served: PatrolProcess, pieces: int) -> None:
    """A head that goes on (one header that never ends) is answered 400 and closed at
    16 KiB, whether it came in one read or several. Before, with httptools: it was read
    on until the deadline, held in memory."""
    head = b"GET /status/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * (MAX_HEAD + 4096)
    with connect(served) as sock:
        answer = answer_to(sock, head, pieces=pieces)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_many_headers_past_16_kib_are_refused(served: PatrolProcess, parser: str) -> None:
    """Many short headers add up: refused the same way (h11 counts what it buffered)."""
    head = b"GET /status/ HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Many: " + b"m" * 90 + b"\r\n" * 1
    head += b"".join(b"X-Many-%d: %s\r\n" % (i, b"m" * 90) for i in range(MAX_HEAD // 50))
    with connect(served) as sock:
        answer = answer_to(sock, head, pieces=16)  # never ends: no blank line
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_a_head_under_the_limit_is_answered(served: PatrolProcess) -> None:
    """No false refusals: 12 KiB of headers, sent in pieces, get their answer."""
    head = b"GET /status/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += b"".join(b"X-Fill-%d: %s\r\n" % (i, b"f" * 100) for i in range(120)) + b"\r\n"
    assert 12_000 < len(head) < MAX_HEAD
    for pieces in (1, 5):
        with connect(served) as sock:
            answer = answer_to(sock, head, pieces=pieces)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]


def test_pipelined_requests_are_answered_in_order(served: PatrolProcess) -> None:
    """A few requests pipelined in one write: every one answered, in order."""
    requests = b"".join(b"GET /api/?id=%s&group=app HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % app
                        for app in (b"web", b"nope", b"web", b"nope", b"web", b"nope"))
    with connect(served) as sock:
        sock.sendall(requests)
        answers = Answers(sock)
        statuses = [answers.next()[0] for _ in range(6)]
    assert statuses == [200, 400] * 3


def test_a_flood_of_pipelined_requests_is_dropped(served: PatrolProcess, parser: str) -> None:
    """Hundreds of requests in one write: httptools would parse them all into memory at
    once (a few KB each): the connection is dropped past the limit. h11 reads one
    request at a time and answers them in turn. Either way Patrol goes on serving."""
    count = 20 * MAX_PIPELINE
    requests = b"GET /api/?id=web&group=app HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * count
    with connect(served) as sock:
        answer = answer_to(sock, requests) if parser == "httptools" else b""
        if parser == "h11":
            sock.sendall(requests)
            answers = Answers(sock)
            assert all(answers.next()[0] == 200 for _ in range(count))
    assert answer.count(b"HTTP/1.1 200 ") < count if parser == "httptools" else True
    with connect(served) as sock:
        sock.sendall(b"GET /api/?id=web&group=app HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert Answers(sock).next()[0] == 200
    if parser == "httptools":
        assert "dropped HTTP connections that pipelined too many requests" in served.log()


def test_a_method_llhttp_does_not_know_gets_the_apis_405(served: PatrolProcess) -> None:
    """``FOO /api/`` gets the API's 405 in JSON (h11 takes any method token; llhttp
    refuses it: the connection goes on with h11), and the connection stays usable."""
    with connect(served) as sock:
        answers = Answers(sock)
        sock.sendall(b"FOO /api/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, body = answers.next()
        assert (status, json.loads(body)) == (405, {"errors": ["Invalid Method"]})
        sock.sendall(b"GET /api/?id=web&group=app HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, body = answers.next()
        assert status == 200 and json.loads(body)["id"] == "web"


def test_h11_serves_when_httptools_cannot_be_imported() -> None:
    """httptools is optional at run time: without it, h11 serves (and says nothing)."""
    code = ("import sys; sys.modules['httptools'] = None\n"
            "from patrol.web import protocols\n"
            "print(protocols.protocol_class().__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "H11Connection", out.stderr


def test_the_environment_picks_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    from patrol.web import protocols

    monkeypatch.setenv(PARSER_ENV, "h11")
    assert protocols.protocol_class() is protocols.H11Connection
    monkeypatch.delenv(PARSER_ENV)
    assert protocols.protocol_class() is protocols.HttpToolsConnection
