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
from typing import Any, cast

import structlog

from patrol import (KeepAlive, PatrolView, PingKeepAlive, Register, Transport, bind, hookimpl, is_ping_only,
                    json_dumps, json_loads, parse_listen, secret_credential, udp_allowed)

MAX_DATAGRAM = 2048
#: ``udp.answer``: what UDP answers (see the module's docstring)
ANSWERS = ("full", "pings-only", "minimal")
log = structlog.get_logger("patrol.udp")


class UdpKeepAlive(PingKeepAlive):
    name = "udp"
    aliases = (4,)
    ping_transport = "udp"


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: "UdpTransport") -> None:
        self.owner = owner
        self.sock: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sock = cast(asyncio.DatagramTransport, transport)  # made by create_datagram_endpoint

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = self.owner.answer(data, str(addr[0]) if isinstance(addr, tuple) and addr else "")
        if reply is None or self.sock is None:
            self.owner.dropped += 1
            return
        try:
            self.sock.sendto(reply, addr)
        except OSError as exc:  # never fatal
            log.warning("udp reply failed", peer=addr, error=str(exc))

    def error_received(self, exc: Exception) -> None:
        log.warning("udp socket error", error=str(exc))


class UdpTransport(Transport):
    name = "udp"

    def __init__(self, patrol: PatrolView, api: PatrolView | None = None) -> None:
        super().__init__(patrol, api)
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        #: datagrams answered with silence (bad input or an error), for diagnostics
        self.dropped = 0

    async def start(self) -> None:
        host, port = parse_listen(self.patrol.config.udp.listen, 1248)
        self._sock = bind(host, port, socket.SOCK_DGRAM)
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=self._sock)

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
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
        body = {k: v for k, v in result.body.items() if k not in ("history", "keyvalue")}
        return json_dumps(body, pretty=False)


@hookimpl
def patrol_register_keepalives(register: Register[KeepAlive]) -> None:
    register(UdpKeepAlive)


@hookimpl
def patrol_register_transports(register: Register[Transport]) -> None:
    register(UdpTransport)
