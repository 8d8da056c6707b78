"""patrol.web.shortcut: ``/api/`` requests answered inside their connection are answered
byte for byte as the ASGI way answers them, against a live ``patrol run``.

The same request goes both ways on one Patrol: a request that came whole in one read
(a small write on a fresh loopback connection) takes the shortcut; the same request
with its body chunked (``Transfer-Encoding: chunked``, which the shortcut never takes),
or pipelined behind another one, takes the ASGI way. Requests that change nothing, so
both answers describe the same state.
"""

from __future__ import annotations

import json
import socket

import pytest

from patrol.testing import PatrolFactory, PatrolProcess

SECRET = "s3cret-of-the-pinger"
TOKEN = "the-token-of-this-patrol"


def connect(p: PatrolProcess) -> socket.socket:
    host, _, port = p.http.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_answer(file) -> bytes:  # type: ignore[no-untyped-def]
    """One whole answer, its head and its body (by Content-Length), as sent."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = file.readline()
        if not line:
            raise ConnectionError(f"closed within an answer: {head!r}")
        head += line
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head + file.read(length)


def request(method: str, target: str, body: bytes | None = None, *, headers: str = "",
            chunked: bool = False, version: str = "1.1") -> bytes:
    head = f"{method} {target} HTTP/{version}\r\nHost: 127.0.0.1\r\n{headers}"
    if chunked:  # the ASGI way: the shortcut takes no chunked body
        data = body or b""
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + \
            (b"%x\r\n%s\r\n" % (len(data), data) if data else b"") + b"0\r\n\r\n"
    if body is None:
        return (head + "\r\n").encode()
    return (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def both_ways(p: PatrolProcess, method: str, target: str, body: bytes | None = None, **kw: str) -> list[bytes]:
    """The answers to one request: alone (the shortcut), chunked and pipelined (the ASGI way)."""
    answers = []
    filler = request("GET", "/api/?group=app&id=nobody")
    for data, nth in ((request(method, target, body, **kw), 0),
                      (request(method, target, body, chunked=True, **kw), 0),
                      (filler + request(method, target, body, **kw), 1)):
        with connect(p) as sock:
            sock.sendall(data)
            file = sock.makefile("rb")
            answers.append([read_answer(file) for _ in range(nth + 1)][nth])
    return answers


def same_both_ways(p: PatrolProcess, method: str, target: str, body: bytes | None = None, **kw: str) -> bytes:
    shortcut, chunked, pipelined = both_ways(p, method, target, body, **kw)
    assert shortcut == chunked == pipelined, (shortcut, chunked, pipelined)
    return shortcut


@pytest.fixture
def open_patrol(patrol: PatrolFactory) -> PatrolProcess:
    return patrol.start(patrol.config(apps={"web": patrol.app(1, name="Web"),
                                            "pinged": patrol.app("http", secret=SECRET)}))


@pytest.fixture
def closed_patrol(patrol: PatrolFactory) -> PatrolProcess:
    config = patrol.config(apps={"pinged": patrol.app("http", secret=SECRET)})
    token = patrol.tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    config["http"]["auth"] = {"token-file": str(token)}
    return patrol.start(config)


def test_api_answers_are_the_same_both_ways(open_patrol: PatrolProcess) -> None:
    """(``pinged`` is not running: its answer has no live figures, which change by the moment.)"""
    p = open_patrol
    ok = same_both_ways(p, "GET", "/api/?group=app&id=pinged")
    assert ok.startswith(b"HTTP/1.1 200 OK\r\ncontent-length: ") and b"content-type: application/json" in ok
    assert json.loads(ok.partition(b"\r\n\r\n")[2])["id"] == "pinged"
    assert same_both_ways(p, "POST", "/api/", b'{"group":"app","id":"pinged"}') == ok
    proven = same_both_ways(p, "POST", "/api/", b'{"group":"app","id":"pinged","secret":"%s"}' % SECRET.encode())
    assert proven.startswith(b"HTTP/1.1 200 ") and proven != ok
    for method, target, body, status in (
        ("GET", "/api/?group=app&id=nobody", None, b"400"),
        ("GET", "/api/?group=app&id=web&bogus=1", None, b"400"),
        ("POST", "/api/", b'{"group":"app","id":"nobody"}', b"400"),
        ("POST", "/api/", b'{"group":"app","id":"web","bogus":1}', b"400"),
        ("POST", "/api/", b'{"group": "app", "id": ', b"400"),  # no JSON
        ("POST", "/api/", b"", b"400"),  # null: an unknown group
        ("POST", "/api/", b'{"group":"app","id":"pinged","secret":"wrong","ping":true}', b"400"),
        ("POST", "/api/", b'{"group":"app","id":"web","ping":true}', b"400"),  # no ping keepalive
    ):
        answer = same_both_ways(p, method, target, body)
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer
        assert b"connection: close" not in answer


def test_refusals_and_closes_are_the_same_both_ways(open_patrol: PatrolProcess) -> None:
    p = open_patrol
    target = "/api/?group=app&id=pinged"
    cross = same_both_ways(p, "GET", target, headers="Origin: http://elsewhere.example\r\n")
    assert cross.startswith(b"HTTP/1.1 403 ")
    fetch = same_both_ways(p, "POST", "/api/", b'{"group":"app","id":"pinged"}', headers="Sec-Fetch-Site: cross-site\r\n")
    assert fetch.startswith(b"HTTP/1.1 403 ")
    rebound = request("GET", target).replace(b"Host: 127.0.0.1", b"Host: rebound.example")
    with connect(p) as sock:
        sock.sendall(rebound)
        assert read_answer(sock.makefile("rb")).startswith(b"HTTP/1.1 403 ")
    closing = same_both_ways(p, "GET", target, headers="Connection: close\r\n")
    assert closing.startswith(b"HTTP/1.1 200 ") and closing.count(b"connection: close\r\n") == 1
    old = same_both_ways(p, "GET", target, version="1.0")
    assert old.startswith(b"HTTP/1.1 200 ") and b"connection: close\r\n" in old


def test_a_closing_answer_closes_the_connection_and_a_kept_one_serves_on(open_patrol: PatrolProcess) -> None:
    p = open_patrol
    with connect(p) as sock:
        sock.sendall(request("GET", "/api/?group=app&id=web", headers="Connection: close\r\n"))
        file = sock.makefile("rb")
        read_answer(file)
        assert file.read() == b""  # closed by Patrol
    with connect(p) as sock:
        file = sock.makefile("rb")
        for _ in range(3):  # one request per write: each may take the shortcut
            sock.sendall(request("POST", "/api/", b'{"group":"app","id":"web"}'))
            assert read_answer(file).startswith(b"HTTP/1.1 200 ")


def test_the_gate_answers_the_same_both_ways(closed_patrol: PatrolProcess) -> None:
    p = closed_patrol
    target = "/api/?group=app&id=pinged"
    none = same_both_ways(p, "GET", target)
    assert none.startswith(b"HTTP/1.1 401 ") and b"www-authenticate: Bearer realm=\"patrol\"\r\n" in none
    wrong = same_both_ways(p, "GET", target, headers="Authorization: Bearer not-the-token\r\n")
    assert wrong.startswith(b"HTTP/1.1 401 ")
    right = same_both_ways(p, "GET", target, headers=f"Authorization: Bearer {TOKEN}\r\n")
    assert right.startswith(b"HTTP/1.1 200 ")
    # a token-less request that is not a ping with the right secret: refused by the body
    for body in (b'{"group":"app","id":"pinged","secret":"wrong","ping":true}',
                 b'{"group":"app","id":"pinged","secret":"' + SECRET.encode() + b'","toggle":2}',
                 b'{"group":"app","id":"pinged"}'):
        assert same_both_ways(p, "POST", "/api/", body).startswith(b"HTTP/1.1 401 ")


def test_a_token_less_ping_with_its_secret_is_answered_without_key_values(closed_patrol: PatrolProcess) -> None:
    p = closed_patrol
    body = json.dumps({"group": "app", "id": "pinged", "secret": SECRET, "ping": True, "pid": 4242}).encode()
    for data in (request("POST", "/api/", body), request("POST", "/api/", body, chunked=True)):
        with connect(p) as sock:
            sock.sendall(data)
            answer = read_answer(sock.makefile("rb"))
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert "keyvalue" not in json.loads(answer.partition(b"\r\n\r\n")[2])
