"""patrol.web.coalesce: an answer's head and body leave in one write, and nothing is
held past the loop's turn, a close, or a write that is not small.

The inner transport here is a real asyncio TCP transport over a socket pair, with its
writes recorded (each one is a send() attempt); the bytes are read on the other end.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from patrol.web.coalesce import HOLD_MAX, CoalescingTransport


async def _pair() -> tuple[Any, socket.socket, list[bytes]]:
    """(a real TCP transport whose writes are recorded, the peer socket, the record)."""
    ours, peer = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    writes: list[bytes] = []
    real_write = transport.write

    def write(data: Any) -> None:
        writes.append(bytes(data))
        real_write(data)

    transport.write = write  # type: ignore[method-assign]
    peer.setblocking(False)
    return transport, peer, writes


def received(peer: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = peer.recv(65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_head_and_its_body_leave_in_one_write() -> None:
    async def main() -> None:
        inner, peer, writes = await _pair()
        t = CoalescingTransport(inner, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        assert writes == []  # held for the body
        t.write(b"{}")
        t.write(b"")  # h11's end of message: nothing
        assert writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(writes) == 1  # the turn's flush found nothing held
        assert received(peer).endswith(b"\r\n\r\n{}")
        t.close()
        peer.close()

    asyncio.run(main())


def test_a_lone_write_is_sent_at_the_end_of_the_loops_turn() -> None:
    """An event stream's head, whose body comes later, is not held longer than a turn."""
    async def main() -> None:
        inner, peer, writes = await _pair()
        t = CoalescingTransport(inner, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert t.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\n")  # counted while held
        await asyncio.sleep(0)
        assert writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
        t.write(b"data: 1\n\n")  # and the next lone write again
        await asyncio.sleep(0)
        assert writes[1:] == [b"data: 1\n\n"]
        assert received(peer) == b"HTTP/1.1 200 OK\r\n\r\ndata: 1\n\n"
        t.close()
        peer.close()

    asyncio.run(main())


def test_large_writes_and_close_send_what_is_held_first_and_abort_drops_it() -> None:
    async def main() -> None:
        inner, peer, writes = await _pair()
        t = CoalescingTransport(inner, asyncio.get_running_loop())
        big = b"x" * (HOLD_MAX + 1)
        t.write(big)
        assert writes == [big]  # not held
        t.write(b"head")
        t.write(big)
        assert writes[1:] == [b"head" + big]  # in order, together
        t.write(b"last words")
        t.close()
        assert writes[2:] == [b"last words"]  # a close sends what is held first
        await asyncio.sleep(0.01)
        assert received(peer).endswith(b"last words")
        peer.close()

        inner, peer, writes = await _pair()
        t = CoalescingTransport(inner, asyncio.get_running_loop())
        t.write(b"never")
        t.abort()
        await asyncio.sleep(0)
        assert writes == [] and t.is_closing()
        peer.close()

    asyncio.run(main())
