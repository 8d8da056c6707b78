"""An answer the kernel will not take at once is dropped and counted, never queued.

The promise (the listener's docstring, docs/api.md): a client that sends pings and never
reads the answers must not make Patrol hold answers in memory, nor block the loop in
``sendto``. Over loopback UDP the kernel never refuses an answer (the packet leaves the
sender's account as soon as it is handed to the receiver), so this test runs the real
listener over a real datagram socket whose receive queue does fill: an AF_UNIX datagram
socket, whose reader's queue holds ``net.unix.max_dgram_qlen`` datagrams. Same calls
(``recvfrom``, non-blocking ``sendto``), same kernel answer when the peer is full
(EAGAIN).
"""

from __future__ import annotations

import asyncio
import os
import socket

from patrol_keepalive_udp import _Listener


class _Echo:
    """Answers every datagram with a reply of its own."""

    def __init__(self) -> None:
        self.dropped = self.unsent = 0
        self.answered = 0

    def answer(self, data: bytes, peer: str = "") -> bytes | None:
        self.answered += 1
        return b"re:" + data


def _pair() -> tuple[socket.socket, socket.socket]:
    """A listening datagram socket and a client, both bound (abstract names), so that
    the listener's ``recvfrom`` gives it an address to answer to."""
    tag = f"patrol-test-{os.getpid()}-{id(object())}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(f"\0{tag}-server")
    server.setblocking(False)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client.bind(f"\0{tag}-client")
    client.setblocking(False)
    return server, client


def _drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(100))
        except BlockingIOError:
            return got


def test_answers_to_a_client_that_does_not_read_are_dropped_and_counted_not_queued():
    loop = asyncio.new_event_loop()
    server, client = _pair()
    owner = _Echo()
    listener = _Listener(owner, server, loop)  # type: ignore[arg-type]
    try:
        address = server.getsockname()
        # the client pings and never reads: once its queue is full, the kernel refuses
        # every further answer; the listener must go on (no blocking sendto, no error)
        sent = 0
        while owner.unsent < 5:
            assert sent < 10_000, "the kernel never refused an answer: nothing was tested"
            client.sendto(b"%d" % sent, address)
            sent += 1
            listener.readable()  # returns: a full peer does not block the loop
        assert owner.answered == sent and owner.dropped == 0
        delivered = _drain(client)
        # exactly the answers the kernel took arrived, in order; the refused ones are gone
        assert len(delivered) == sent - owner.unsent
        assert delivered == [b"re:%d" % n for n in range(len(delivered))]
        # nothing was kept to be sent later: no more answers arrive once there is room
        listener.readable()
        assert _drain(client) == []
        # and the client that reads again is answered again
        client.sendto(b"again", address)
        listener.readable()
        assert _drain(client) == [b"re:again"]
    finally:
        listener.close()
        client.close()
        loop.close()
