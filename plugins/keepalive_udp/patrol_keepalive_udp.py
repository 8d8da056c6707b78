"""Patrol keepalive ``udp`` (4) and the UDP API transport.

The transport lives here, not in the kernel: a kernel-only install opens no UDP port.
One JSON request per datagram (at most 2048 bytes, the original's read buffer; larger
ones are dropped), answered with compact JSON without ``history`` and ``keyvalue``.
A request with errors gets no reply at all (as the original), and a failed send is
logged, never fatal (the original shut the whole daemon down on any UDP error).

UDP has no connection and the source address can be forged: it is meant for pings on
a trusted network (loopback by default), never for secrets. Two defences follow:

* **Guessing secrets is throttled** with Patrol's one throttle (``patrol.guesses``, shared with HTTP),
  keyed by client (all of loopback is one): after too many wrong secrets of one item,
  that client's datagrams carrying that item's secret get silence, even the right one,
  and a (rate-limited) log line.
* **Reflection.** An answer goes to the source address, which anyone can forge, and is
  several times larger than the request (measured: 7-16 times): a small spoofed datagram
  makes Patrol send a larger one to a victim. ``udp.answer`` limits what UDP answers:
  ``full`` (the original's behaviour, the default), ``pings-only`` (only pings are
  handled; other requests are dropped unanswered) or ``minimal`` (pings only, answered
  with ``{}``, or ``{"cas-invalid":true}`` when the ping was not taken: never larger
  than the request).
"""

from __future__ import annotations

import asyncio
import socket
import time

import structlog

from patrol import (KeepAlive, PatrolView, PingKeepAlive, Register, Transport, bind, hookimpl, is_ping_only,
                    json_dumps, json_loads, parse_listen, secret_credential, udp_allowed)

MAX_DATAGRAM = 2048
#: bytes asked of ``recvfrom``: one more than a datagram may hold, so that a larger one
#: (truncated to this) is still seen as too large
RECEIVE_SIZE = MAX_DATAGRAM + 1
#: datagrams answered per wake-up of the loop, at most (about 2 ms of pings) ...
BATCH = 32
#: ... and no more once this long has passed: a toggle or a key/value write is committed
#: to the state file before it is answered, and 32 of them must not hold the loop that long
BATCH_SECONDS = 0.002
#: the socket's receive queue asked for, in bytes (see :meth:`UdpTransport.start`)
RECEIVE_BUFFER = 4 << 20
#: ``udp.answer``: what UDP answers (see the module's docstring)
ANSWERS = ("full", "pings-only", "minimal")
log = structlog.get_logger("patrol.udp")


class UdpKeepAlive(PingKeepAlive):
    name = "udp"
    aliases = (4,)
    ping_transport = "udp"


class _Listener:
    """Reads datagrams straight off the socket, up to :data:`BATCH` per wake-up.

    asyncio's datagram transport reads one datagram per turn of the loop, into a 256 KiB
    buffer: under load every ping paid a whole loop turn (an ``epoll_wait`` and the
    scheduling around it) besides its own work. Draining the datagrams that are already
    queued shares one turn among them, and the bound keeps every other callback (HTTP,
    timers, exits) waiting at most one batch. Answers go out with one non-blocking
    ``sendto``: one that would block is dropped and counted (UDP promises no delivery,
    and a queue of answers that the kernel will not take is memory an attacker chooses).
    """

    def __init__(self, owner: "UdpTransport", sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.sock = sock
        self.loop = loop
        self.fd = sock.fileno()
        loop.add_reader(self.fd, self.readable)

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        self.sock.close()

    def readable(self) -> None:
        """The socket has datagrams: answer up to ``BATCH`` of them, stopping early once
        ``BATCH_SECONDS`` have passed, then yield."""
        recvfrom, sendto, answer, clock = self.sock.recvfrom, self.sock.sendto, self.owner.answer, time.monotonic
        until = clock() + BATCH_SECONDS
        for _ in range(BATCH):
            try:
                data, addr = recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                return  # drained
            except OSError as exc:  # e.g. an ICMP error queued on the socket: never fatal
                log.warning("udp socket error", error=str(exc))
                return
            reply = answer(data, addr[0] if isinstance(addr, tuple) and addr else "")
            if reply is None:
                self.owner.dropped += 1
            else:
                try:
                    sendto(reply, addr)
                except (BlockingIOError, InterruptedError):
                    self.owner.unsent += 1  # the kernel's send queue is full: the answer is lost
                except OSError as exc:  # never fatal
                    log.warning("udp reply failed", peer=addr, error=str(exc))
            if clock() >= until:
                return  # the rest waits for the next turn (the socket is still readable)


class UdpTransport(Transport):
    name = "udp"

    def __init__(self, patrol: PatrolView, api: PatrolView | None = None) -> None:
        super().__init__(patrol, api)
        self._listener: _Listener | None = None
        self._sock: socket.socket | None = None
        #: datagrams answered with silence (bad input or an error), for diagnostics
        self.dropped = 0
        #: answers the kernel would not take at once (a full send queue), for diagnostics
        self.unsent = 0

    async def start(self) -> None:
        host, port = parse_listen(self.patrol.config.udp.listen, 1248)
        self._sock = bind(host, port, socket.SOCK_DGRAM)
        try:
            # a larger queue rides out a moment without the loop (a burst of spawns, a
            # busy machine): pings wait in it instead of being dropped by the kernel,
            # which caps the size at net.core.rmem_max (kernel memory, taken when used)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError as exc:
            log.warning("udp receive buffer not enlarged", error=str(exc))
        self._listener = _Listener(self, self._sock, asyncio.get_running_loop())

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._sock = None

    @property
    def address(self) -> tuple[str, int] | None:
        return self._sock.getsockname()[:2] if self._sock is not None else None

    def answer(self, data: bytes, peer: str = "") -> bytes | None:
        """The reply to one datagram from ``peer`` (its source address), or None for
        silence (bad input, an error, a refused guess)."""
        if len(data) > MAX_DATAGRAM:
            return None
        try:
            request = json_loads(data)  # strict: no NaN, which would come back out in answers
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None
        if request is None or not udp_allowed(self.patrol, request):  # with http.auth: pings only
            return None
        mode = self.patrol.config.udp.answer
        if mode != "full" and not is_ping_only(request):
            return None
        guesses = self.patrol.guesses
        credential = secret_credential(request)
        if credential and guesses.retry_after(peer, credential, "udp"):
            return None
        try:
            result = self.patrol.handle(request, "udp", history=False)
        except Exception as exc:  # noqa: BLE001 - a datagram must never take Patrol down
            log.error("udp request failed", error=type(exc).__name__)
            return None
        if credential and "Secret Invalid" in result.body.get("errors", ()):
            guesses.failed(peer, credential, "udp")
        if not result.ok:
            return None
        if mode == "minimal":
            reply = json_dumps({"cas-invalid": True} if result.body.get("cas-invalid") else {}, pretty=False)
            return reply if len(reply) <= len(data) else None
        body = result.body
        if "history" in body or "keyvalue" in body:  # most pings have neither: no copy then
            body = {k: v for k, v in body.items() if k not in ("history", "keyvalue")}
        return json_dumps(body, pretty=False)


@hookimpl
def patrol_register_keepalives(register: Register[KeepAlive]) -> None:
    register(UdpKeepAlive)


@hookimpl
def patrol_register_transports(register: Register[Transport]) -> None:
    register(UdpTransport)
