"""The protocol that runs on each HTTP connection: uvicorn's, plus Patrol's defences.

:class:`Connection` adds to a uvicorn HTTP protocol what :mod:`patrol.web.connections`
describes (a deadline per request, stalled readers dropped, event streams, reports to
the :class:`~patrol.web.connections.Listener`). It runs over either of uvicorn's two
HTTP/1.1 implementations, one subclass each:

* :class:`HttpToolsConnection` (the default when ``httptools`` is importable): the
  llhttp parser in C. An HTTP ping costs Patrol ~35% less CPU than with h11, which
  is pure Python and was a quarter of a ping's Python time.
* :class:`H11Connection`: h11, the fallback (``PATROL_HTTP_PARSER=h11`` picks it).

What h11 enforces and uvicorn's httptools protocol does not is added here: a head that
has not ended after :data:`MAX_HEAD` bytes is refused (400, and the connection closed,
as uvicorn answers h11's own limit), and a client that pipelines requests is read no
further while one is waiting (at most :data:`MAX_PIPELINE` parsed ahead, then dropped),
so neither a long head nor a flood of pipelined requests can grow Patrol's memory.

Over httptools, a request to ``/api/`` that came whole in one read (an HTTP ping) is
answered where the parser completes it, without a task or the ASGI stack
(:mod:`patrol.web.shortcut`); the deadlines and uvicorn's keep-alive timer are one timer
per connection each (:mod:`patrol.web.deadline`), not one per request.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any, Callable, Protocol, cast

import uvicorn
from uvicorn.server import ServerState

from patrol.web.coalesce import CoalescingTransport
from patrol.web.deadline import Deadline

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11 serves
    HttpToolsProtocol = None  # type: ignore[assignment,misc]  # a class, or None when not installed

#: where a handler finds its connection (the request scope's ``state``)
CONNECTION_KEY = "patrol.connection"
#: an event stream's send buffers: kernel and asyncio (a stalled reader shows soon)
STREAM_BUFFER = 16 * 1024
#: bytes of a request head (request line and headers) that may arrive before it ends:
#: h11's own limit (``h11_max_incomplete_event_size``), so both parsers refuse the same
MAX_HEAD = 16 * 1024
#: requests a client may pipeline ahead of the one being answered (httptools parses
#: what arrived at once; h11 reads one request at a time)
MAX_PIPELINE = 32
#: bytes asked of each recv(): asyncio's 256 KiB is above malloc's mmap threshold, so each
#: read mapped, shrank and unmapped a buffer (three system calls per request)
READ_SIZE = 64 * 1024
#: picks the parser: "httptools" (the default, when installed) or "h11"
PARSER_ENV = "PATROL_HTTP_PARSER"


class Limited(Protocol):
    """What a connection needs of its :class:`~patrol.web.connections.Listener` (which
    imports this module: named here by what it does, not by its class)."""

    loop: asyncio.AbstractEventLoop
    uvicorn_log: Any
    limits: Callable[[], Any]
    #: answers whole ``/api/`` requests inside the connection (patrol.web.shortcut), or None
    shortcut: Any

    def stream_room(self) -> int: ...
    def note(self, what: str, event: str, level: str = "info", **fields: Any) -> None: ...
    def busy(self, connection: "Connection") -> None: ...
    def idle(self, connection: "Connection") -> None: ...
    def forget(self, connection: "Connection") -> None: ...
    def replace(self, old: "Connection", new: "Connection") -> None: ...


class HeadTooLong(Exception):
    """A request head went on past :data:`MAX_HEAD` bytes."""


class Connection(asyncio.Protocol):
    """A uvicorn HTTP protocol (a subclass names which), reporting to its
    :class:`~patrol.web.connections.Listener` and keeping a deadline."""

    # uvicorn's protocol sets these (both implementations name them alike)
    transport: Any
    cycle: Any
    flow: Any
    loop: asyncio.AbstractEventLoop
    app_state: dict[str, Any]
    logger: Any

    def __init__(self, config: uvicorn.Config, server_state: ServerState, listener: Limited) -> None:
        super().__init__(config=config, server_state=server_state, app_state={},  # type: ignore[call-arg]  # uvicorn's protocol
                         _loop=listener.loop)
        self.listener = listener
        # its warnings, rate limited: a stand-in with the logging.Logger methods uvicorn calls
        self.logger = listener.uvicorn_log
        self.app_state[CONNECTION_KEY] = self  # handlers of long answers find it (stream(), drop())
        #: inside a request: from a complete head until the end of its answer
        self.in_request = False
        self.streaming = False
        self._deadline = Deadline(self.loop, self._expired)
        self._stalled: asyncio.TimerHandle | None = None

    # -- asyncio's calls -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = cast(asyncio.Transport, transport)  # a TCP connection's transport
        if hasattr(tcp, "max_size"):  # asyncio's selector transport (a class attribute there)
            tcp.max_size = READ_SIZE
        if not isinstance(tcp, CoalescingTransport):  # (handed over from httptools: wrapped already)
            tcp = CoalescingTransport(tcp, self.loop)  # an answer's head and body in one send()
        super().connection_made(tcp)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        super().connection_lost(exc)
        self.listener.forget(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._observe()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]  # uvicorn's protocol has it
        self._observe()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.listener.limits().client_timeout, self._not_reading)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    # -- the deadline ----------------------------------------------------------------

    def _observe(self) -> None:
        """Note where the connection is after h11 took what arrived (or an answer ended)."""
        if self.transport is None or self.transport.is_closing():
            return
        cycle = self.cycle
        active = cycle is not None and not cycle.response_complete
        if active and not self.in_request:
            self.in_request = True
            self.listener.busy(self)
        elif not active and self.in_request:
            self.in_request = False
            self.streaming = False  # a stream that ended (follow=0): the next answer is not one
            self.listener.idle(self)
            self._arm()  # the next request's head has the same time
        if active and not cycle.more_body:
            self._disarm()  # the whole request is in: its handler may take its time

    def _arm(self) -> None:
        self._deadline.arm(self.listener.limits().client_timeout)

    def _disarm(self) -> None:
        self._deadline.disarm()

    def _expired(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            return  # complete, being answered
        self.listener.note("timed-out", "closed HTTP connections that sent no complete request in time",
                           timeout=self.listener.limits().client_timeout)
        self.transport.close()  # a handler still reading the body gets http.disconnect

    def _not_reading(self) -> None:
        self._stalled = None
        if self.transport is not None and not self.transport.is_closing():
            self.listener.note("stalled", "dropped HTTP connections whose client stopped reading the answer",
                               timeout=self.listener.limits().client_timeout)
            self.transport.abort()  # close() would wait for the buffer to drain: never

    def stream(self) -> None:
        """The answer is an event stream: small send buffers, so that a client that stops
        reading pauses it after kilobytes, not megabytes (then it is dropped)."""
        self.streaming = True
        if self.transport is not None:
            self.transport.set_write_buffer_limits(high=STREAM_BUFFER)
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_BUFFER)

    def drop(self) -> None:
        """Cut an event stream whose client fell too far behind."""
        if self.transport is not None and not self.transport.is_closing():
            self.listener.note("stream-dropped", "dropped event stream clients that did not keep up")
            self.transport.abort()

    def shed(self) -> None:
        """Close an idle connection to make room for a new one."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        if self.transport is not None:  # else not connected yet: its start is cancelled
            super().shutdown()  # type: ignore[misc]  # uvicorn's protocol has it



def h11_connection() -> type[Connection]:
    """The h11 protocol class (:data:`H11Connection`), made on first use: with httptools
    installed h11 serves only a request whose method llhttp does not know, and importing
    h11 and uvicorn's protocol for it cost every Patrol ~0.4 MiB it mostly never uses."""
    global _h11
    if _h11 is None:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        class H11Connection(Connection, H11Protocol):
            """Over h11 (pure Python): the fallback."""

        H11Connection.__module__ = __name__
        _h11 = H11Connection
    return _h11


_h11: type[Connection] | None = None


def __getattr__(name: str) -> Any:
    """``protocols.H11Connection``, made when first asked for (see :func:`h11_connection`)."""
    if name == "H11Connection":
        return h11_connection()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if HttpToolsProtocol is not None:
    from patrol.web.llhttp import Llhttp as _Llhttp, MethodUnknown as _MethodUnknown

    class HttpToolsConnection(Connection, _Llhttp):
        """Over httptools (llhttp), with the limits h11 has and uvicorn's httptools
        protocol lacks: the head's size, and how far a client may pipeline ahead. A
        request whose method llhttp does not know (h11 takes any token: ``FOO /api/``
        gets the API's 405 in JSON, as the original answered) hands the connection to
        h11 for good."""

        def __init__(self, config: uvicorn.Config, server_state: ServerState, listener: Limited) -> None:
            super().__init__(config, server_state, listener)
            #: bytes of the head being received (its URL and headers, as the parser hands
            #: them over; and whole reads of it): None when no head is open
            self._head: int | None = None
            self._head_read = 0
            #: the read being parsed, when it began between requests; requests it began
            self._fresh = None
            self._begun = 0
            #: the head being completed is the read's first request, none queued before it
            self._first = False
            #: the cycle of an /api/ request the shortcut answers once its body is in
            self._waiting: Any = None

        def data_received(self, data: bytes) -> None:
            was_open = self._head is not None
            self._fresh = data if not was_open and not self.pipeline and self._answered() else None
            self._begun = 0
            try:
                super().data_received(data)
            except _MethodUnknown:
                self._to_h11(data)
                return
            finally:
                # the whole read is head: it continued one, or began one between requests
                whole = was_open or (self._fresh is data and self._begun == 1)
                self._fresh = None
            if self._waiting is not None:  # its body goes on in another read: the ASGI way
                cycle, self._waiting = self._waiting, None
                super()._start_asgi_task(cycle, self.app)
            if self._head is not None:
                if whole:
                    self._head_read += len(data)
                if max(self._head, self._head_read) > MAX_HEAD and not self.transport.is_closing():
                    self._head = None
                    self._parser_error()

        def _answered(self) -> bool:
            return self.cycle is None or bool(self.cycle.response_complete)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head = self._head_read = 0
            self._begun += 1

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._head = None
            self._first = self._begun == 1 and not self.pipeline
            try:
                super().on_headers_complete()
            finally:
                self._first = False
            if self.pipeline:  # a request waits behind the one being answered: read no more
                self.flow.pause_reading()  # (resumed when an answer ends)
                if len(self.pipeline) > MAX_PIPELINE:
                    self.listener.note("pipelined", "dropped HTTP connections that pipelined too many requests",
                                       limit=MAX_PIPELINE)
                    self.pipeline.clear()
                    self.transport.abort()

        # -- the shortcut (patrol.web.shortcut) ------------------------------------

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            shortcut = self.listener.shortcut
            if self._first and app is self.app and shortcut is not None and not cycle.waiting_for_100_continue \
                    and shortcut.takes(cycle.scope):
                self._waiting = cycle  # answered when its body is in (on_message_complete)
                return
            super()._start_asgi_task(cycle, app)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            cycle = self._waiting
            if cycle is not None and cycle is self.cycle and not cycle.more_body:
                self._waiting = None
                if self.flow.write_paused:  # the client does not read: wait for it, as the ASGI way does
                    super()._start_asgi_task(cycle, self.app)
                else:
                    self.listener.shortcut.respond(self, cycle)

        def _count(self, size: int) -> None:
            """The parser hands over the URL and each header as they end: a head too long
            is refused here even when it arrived in a single read."""
            if self._head is not None:
                self._head += size
                if self._head > MAX_HEAD:
                    raise HeadTooLong  # the parser raises it on as its error: 400, closed

        def _to_h11(self, data: bytes) -> None:
            """Hand the connection to h11 for good, from the read that began this request."""
            self._deadline.cancel()
            self.connections.discard(self)
            successor = h11_connection()(self.config, self.server_state, self.listener)
            self.listener.replace(self, successor)
            self.transport.set_protocol(successor)
            successor.connection_made(self.transport)
            successor.data_received(data)


def protocol_class() -> type[Connection]:
    """The protocol class new connections run: httptools' when it is installed, unless
    the environment asks for h11 (``PATROL_HTTP_PARSER=h11``)."""
    wanted = os.environ.get(PARSER_ENV, "").strip().lower()
    if wanted == "h11" or HttpToolsProtocol is None:
        return h11_connection()
    return HttpToolsConnection
