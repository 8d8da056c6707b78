"""The UDP keepalive and transport: discovery, framing, silence on errors, robustness.

Black-box against a real ``patrol run`` over a real UDP socket on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Iterator

import patrol_keepalive_udp
import pytest
from patrol_keepalive_udp import BATCH, MAX_DATAGRAM, RECEIVE_BUFFER, UdpKeepAlive, UdpTransport, _Listener

from patrol import bind
from patrol.testing import PatrolFactory, PatrolProcess, installed_plugins, wait_for

QUIET = 0.3  # seconds to wait for a reply (loopback answers in well under 1 ms)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatrolProcess]:
    factory = PatrolFactory(tmp_path_factory.mktemp("udp"))
    apps = {"u": factory.app(4), "h": factory.app(3), "probe": factory.app(4),
            "locked": factory.app(4, secret="pw", keyvalue={"a": 1})}
    try:
        yield factory.start(factory.config(apps=apps, **{"ping-timeout": 180}))
    finally:
        factory.cleanup()


def exchange(p: PatrolProcess, payload: bytes, timeout: float = 2.0) -> bytes | None:
    host, _, port = p.udp.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, (host, int(port)))
        try:
            return sock.recv(65536)
        except socket.timeout:
            return None


def request(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def silent(p: PatrolProcess, payload: bytes) -> bool:
    """No reply to ``payload``: Patrol answers in order, so the first reply is the probe's."""
    host, _, port = p.udp.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(payload, (host, int(port)))
        sock.sendto(request(id="probe", group="app"), (host, int(port)))
        return json.loads(sock.recv(65536))["id"] == "probe"


def test_discovered_as_keepalive_4_and_as_a_transport():
    plugins = installed_plugins()
    assert plugins.keepalives.resolve(4) == plugins.keepalives.resolve("udp") == "udp"
    assert plugins.keepalives.get("udp") is UdpKeepAlive and UdpKeepAlive.ping_transport == "udp"
    assert dict(plugins.transports)["udp"] is UdpTransport


def test_reply_is_compact_json_without_history_or_keyvalue(live):
    live.api(id="u", group="app", keyvalue={"k": "v"})
    reply = exchange(live, request(id="U", group="apps"))
    assert reply is not None and b", " not in reply and b": " not in reply and b"\n" not in reply
    body = json.loads(reply)
    assert body["id"] == "u" and body["group"] == "app" and body["cas-invalid"] is False
    assert "history" not in body and "keyvalue" not in body and "cas" in body and "name" in body


def test_an_item_with_a_secret_answers_read_only_without_it(live):
    body = json.loads(exchange(live, request(id="locked", group="app", toggle=2)) or b"null")
    assert body["cas-invalid"] is True and body["secret"] is True and "disabled" not in body
    assert "disabled" not in live.app("locked")
    assert silent(live, request(id="locked", group="app", secret="nope"))
    assert exchange(live, request(id="locked", group="app", secret="pw", toggle=2)) is not None
    assert live.app("locked")["disabled"] is True


@pytest.mark.parametrize("payload", [
    b"", b"{", b"null", b"[]", b'"u"', b"\xff" * 10, b"[" * 2000,
    request(id="nosuch", group="app"),
    request(id="u", group="app", toggle=300),
    request(id="u", group="app", bogus=1),
    request(id="h", group="app", ping=True),  # an http app pinging over UDP: Invalid Ping Endpoint
    request(id="u", group="service"),
])
def test_errors_and_garbage_get_silence(live, payload):
    assert silent(live, payload)


def test_datagram_size_limit_is_2048_bytes(live):
    base = request(id="u", group="app")
    exact = base[:-1] + b" " * (MAX_DATAGRAM - len(base)) + b"}"
    assert len(exact) == MAX_DATAGRAM and json.loads(exact)["id"] == "u"
    assert exchange(live, exact) is not None
    assert silent(live, exact[:-1] + b" }")


def test_failed_replies_and_floods_never_stop_patrol(live):
    host, _, port = live.udp.rpartition(":")
    for _ in range(50):  # replies to closed ports fail (ICMP port unreachable)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(request(id="u", group="app"), (host, int(port)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for n in range(500):
            sock.sendto(b"garbage %d" % n, (host, int(port)))
    # the kernel may drop datagrams while the flood fills the socket buffer: ask until answered
    wait_for(lambda: exchange(live, request(id="u", group="app"), QUIET), 5, "an answer after the flood")
    assert live.proc is not None and live.proc.poll() is None
    assert "Traceback" not in live.log()


# -- the listener: batches per wake-up, the receive queue ------------------------------


class _Echo:
    """What the listener answers for: each datagram's reply is itself, prefixed;
    ``calls`` records how many datagrams each wake-up answered."""

    def __init__(self) -> None:
        self.dropped = self.unsent = 0
        self.seen: list[bytes] = []

    def answer(self, data: bytes, peer: str = "") -> bytes | None:
        self.seen.append(data)
        return None if data == b"silence" else b"re:" + data


def _listening() -> tuple[socket.socket, socket.socket]:
    server = bind("127.0.0.1", 0, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(5)
    return server, client


def _wake_ups(count: int) -> tuple[list[int], list[bytes], _Echo]:
    """Send ``count`` datagrams (and one that gets silence) to a listener, call it until
    every one is answered; how many each wake-up answered, the replies, the owner."""
    loop = asyncio.new_event_loop()
    server, client = _listening()
    owner = _Echo()
    listener = _Listener(owner, server, loop)  # type: ignore[arg-type]
    try:
        sent = [b"%d" % n for n in range(count)] + [b"silence"]
        for payload in sent:
            client.sendto(payload, server.getsockname())
        per_wake_up: list[int] = []

        def wake_up() -> bool:
            before = len(owner.seen)
            listener.readable()
            per_wake_up.append(len(owner.seen) - before)
            return len(owner.seen) == len(sent)

        wait_for(wake_up, 10, "every datagram answered")
        assert owner.seen == sent and owner.dropped == 1
        replies = [client.recv(100) for _ in sent[:-1]]
        assert replies == [b"re:" + p for p in sent[:-1]]  # in order, each once
    finally:
        listener.close()
        client.close()
        loop.close()
    assert server.fileno() == -1  # closed with the listener
    return [n for n in per_wake_up if n], replies, owner


def test_one_wake_up_answers_at_most_a_batch_in_order_and_the_rest_later(monkeypatch):
    monkeypatch.setattr(patrol_keepalive_udp, "BATCH_SECONDS", 60.0)  # the count bound alone
    per_wake_up, _, _ = _wake_ups(2 * BATCH + 5)
    assert 1 < max(per_wake_up) <= BATCH  # several per wake-up, never more than a batch: the loop gets its turn


def test_a_wake_up_stops_once_its_time_is_up(monkeypatch):
    """Slow answers (toggles are committed to the state file first) end a batch early."""
    monkeypatch.setattr(patrol_keepalive_udp, "BATCH_SECONDS", 0.0)  # every answer takes all the time there is
    per_wake_up, _, _ = _wake_ups(10)
    assert per_wake_up == [1] * 11


def test_a_larger_datagram_than_the_limit_is_seen_as_too_large():
    loop = asyncio.new_event_loop()
    server, client = _listening()
    owner = _Echo()
    listener = _Listener(owner, server, loop)  # type: ignore[arg-type]
    try:
        client.sendto(b"x" * 60_000, server.getsockname())
        wait_for(lambda: listener.readable() or owner.seen, 5, "the datagram read")
        assert len(owner.seen[0]) == MAX_DATAGRAM + 1  # truncated, but longer than any allowed
    finally:
        listener.close()
        client.close()
        loop.close()


def test_the_receive_queue_is_enlarged_up_to_what_the_kernel_allows(live):
    """Pings wait in the socket's queue while the loop is busy, instead of being dropped."""
    import shutil
    import subprocess

    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2) to read the socket's queue size")
    rmem_max = int(open("/proc/sys/net/core/rmem_max").read())
    port = int(live.udp.rpartition(":")[2])
    out = subprocess.run(["ss", "-u", "-a", "-n", "-m", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    size = int(out.split("skmem:(", 1)[1].split(",rb", 1)[1].split(",", 1)[0])  # skmem:(r0,rb<bytes>,...)
    assert size == 2 * min(RECEIVE_BUFFER, rmem_max)  # the kernel doubles what was asked, for its bookkeeping
