"""HTTP connections under hostile clients: deadlines, a cap, shedding, paused accept.

uvicorn serves each connection well once a request has arrived, but it does not defend
the connections themselves (uvicorn 0.54, h11 protocol; see its ``h11_impl.py`` and
``server.py``):

* no deadline for a request head: its keep-alive timer is armed only after a response,
  and any received byte cancels it, so a connection that sends nothing, or trickles a
  head byte by byte (slow loris), stays open for ever;
* ``limit_concurrency`` counts open connections, idle ones included, and answers a real
  request with 503 when they are many: 600 silent connections made every request,
  pings included, a 503, and HTTP-pinged apps were restarted for want of pings;
* asyncio's ``Server`` keeps accepting past the descriptor limit, and logs a traceback
  for every failed ``accept()`` (up to the backlog, 2048, per loop iteration): 42 MB of
  log in ten seconds, while crashed apps could not be restarted ("Too many open files").

So Patrol accepts connections itself (:class:`Listener`) and runs uvicorn's HTTP
protocol on each (httptools' or h11's), subclassed (:class:`patrol.web.protocols.Connection`)
to report where it is. A protocol
subclass plus a small accounting layer keeps all of uvicorn's HTTP handling (parsing,
keep-alive, flow control, ASGI) and adds only what it lacks:

* **A deadline per request** (``http.client-timeout``, default 10 s): the head and the
  body must have arrived within that time of the connection's start, or of the end of
  the previous answer; bytes trickled in do not extend it. A handler working on a
  complete request is never cut off.
* **A stalled reader** (an answer the client does not read on for the same time) is
  dropped: a client must not hold a connection by never reading.
* **A cap on open connections**: ``http.max-connections`` (512), or fewer when the
  descriptor limit leaves less after a reserve for Patrol and its apps
  (:func:`patrol.engine.descriptors.connection_room`), so apps can always be restarted.
* **At the cap, idle connections make room**: the one idle longest (it never sent a
  complete head, or it waits between keep-alive requests) is closed to admit the new
  one. Only when every connection is inside a request does accepting pause: new
  connections wait in the kernel's backlog instead of getting 503, and are accepted as
  soon as one closes. Pings are never starved by idle connections.
* **Event streams** (``GET /events``) are answers that never end: inside a request, so
  never shed and never timed out, but with small buffers, so a client that stops
  reading stalls them soon and is dropped like any stalled reader (or sooner, by the
  stream's own queue). They end first when Patrol stops.
* **Failed accepts** (out of descriptors or memory) pause accepting for a moment; every
  one of these events is logged at a bounded rate (:class:`patrol.util.ratelog.QuietLog`),
  uvicorn's own warnings too.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import structlog
import uvicorn
from uvicorn.server import ServerState

from patrol.engine import descriptors
from patrol.util.ratelog import QuietLog
from patrol.web.protocols import CONNECTION_KEY, Connection, protocol_class

__all__ = ["CONNECTION_KEY", "Connection", "Limits", "Listener"]

#: connections accepted per wake-up of the listening socket (asyncio's own loop takes
#: up to the backlog in one go, starving everything else on the loop meanwhile)
ACCEPT_BATCH = 64
#: after accept() failed for want of descriptors or memory: wait this long
ACCEPT_RETRY = 0.5
#: a connection is shed for a newcomer only after it was idle this long (a client
#: connects, then sends its request a moment later: a burst must not shed itself)
SHED_GRACE = 0.5
#: on stop, answers in progress get this long to finish
CLOSE_GRACE = 1.0
RESOURCE_ERRORS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
log = structlog.get_logger("patrol.http")


@dataclass(frozen=True)
class Limits:
    """What the listener reads from the config on each use (a reload may change it)."""

    client_timeout: float
    max_connections: int
    #: apps and services: each needs descriptors of its own (see patrol.engine.descriptors)
    items: int


class Listener:
    """Accepts connections on ``sock`` and runs a :class:`Connection` on each, within
    the :class:`Limits` that ``limits`` returns."""

    def __init__(self, sock: socket.socket, config: uvicorn.Config, limits: Callable[[], Limits],
                 shortcut: Any = None) -> None:
        self.sock = sock
        self.config = config
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.state = ServerState()
        self.quiet = QuietLog(log)
        self.uvicorn_log = _UvicornLog(self.quiet)
        self.open: set[Connection] = set()
        #: connections outside a request, the longest idle first: (connection -> since when)
        self.idle_since: OrderedDict[Connection, float] = OrderedDict()
        #: how often each defence acted (diagnostics, and the tests' view)
        self.counts: dict[str, int] = {}
        self._starting: set[asyncio.Task[None]] = set()
        self._accepting = False
        self._closing = False
        self._retry: asyncio.TimerHandle | None = None
        #: the protocol each connection runs (patrol.web.protocols: httptools' or h11's)
        self.protocol = protocol_class()
        #: answers whole ``/api/`` requests inside their connection (patrol.web.shortcut), or None
        self.shortcut = shortcut

    def start(self) -> None:
        self._resume()

    def stream_room(self) -> int:
        """How many more event streams may start: at most half the connections (each holds
        one while it listens); the API and the pings always keep the other half."""
        limits = self.limits()
        cap = descriptors.connection_room(limits.items, limits.max_connections)
        return max(1, cap // 2) - sum(1 for c in self.open if c.streaming)

    # -- accepting -------------------------------------------------------------------

    def _resume(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not self._closing and not self._accepting:
            self._accepting = True
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def _pause(self, retry: float | None = None) -> None:
        if self._accepting:
            self.loop.remove_reader(self.sock.fileno())
            self._accepting = False
        if retry is not None and self._retry is None and not self._closing:
            self._retry = self.loop.call_later(retry, self._resume)

    def _accept(self) -> None:
        limits = self.limits()
        cap = descriptors.connection_room(limits.items, limits.max_connections)
        for _ in range(ACCEPT_BATCH):
            if len(self.open) >= cap and not self._shed_one():
                self._pause(self._shed_wait())
                self.note("full", "HTTP connection limit reached: new connections wait until one is free",
                          limit=cap, level="warning")
                return
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in RESOURCE_ERRORS:
                    self.note("accept-failed", "cannot accept HTTP connections for now (out of descriptors or "
                              "memory): paused", error=exc.strerror, open=len(self.open), level="warning")
                    self._pause(ACCEPT_RETRY)
                    return
                continue  # ECONNABORTED and the like: that one connection is gone
            self._serve(sock)

    def _shed_one(self) -> bool:
        """Close the connection idle longest, if it has been idle long enough."""
        if not self.idle_since:
            return False
        connection, since = next(iter(self.idle_since.items()))
        if time.monotonic() - since < SHED_GRACE:
            return False
        self.idle_since.pop(connection)
        self.open.discard(connection)
        connection.shed()
        self.note("shed", "HTTP connection limit reached: closed idle connections to admit new ones")
        return True

    def _shed_wait(self) -> float | None:
        """When an idle connection may be shed; None: none is idle (wait for a close)."""
        if not self.idle_since:
            return None
        since = next(iter(self.idle_since.values()))
        return max(0.01, SHED_GRACE - (time.monotonic() - since))

    def _serve(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        connection = self.protocol(self.config, self.state, self)
        self.open.add(connection)
        self.idle_since[connection] = time.monotonic()
        task = self.loop.create_task(self._connect(sock, connection))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _connect(self, sock: socket.socket, connection: Connection) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: connection, sock)
        except BaseException as exc:
            sock.close()
            self.forget(connection)
            if not isinstance(exc, Exception):
                raise
            log.debug("HTTP connection failed at its start", error=str(exc))

    # -- what connections report ---------------------------------------------------------

    def busy(self, connection: Connection) -> None:
        self.idle_since.pop(connection, None)

    def idle(self, connection: Connection) -> None:
        if connection in self.open:
            self.idle_since[connection] = time.monotonic()
            if not self._accepting:  # paused at the cap: this one may make room soon
                self._pause(SHED_GRACE)

    def replace(self, old: Connection, new: Connection) -> None:
        """``new`` serves what was ``old``'s connection (patrol.web.protocols hands a
        request h11 parses better over): it counts as the same open, idle connection."""
        if old in self.open:
            self.open.discard(old)
            self.open.add(new)
        if self.idle_since.pop(old, None) is not None:
            self.idle_since[new] = time.monotonic()

    def forget(self, connection: Connection) -> None:
        was_open = connection in self.open
        self.open.discard(connection)
        self.idle_since.pop(connection, None)
        if was_open and not self._accepting:
            self._resume()  # room for one more

    def note(self, what: str, event: str, level: str = "info", **fields: Any) -> None:
        """Count a defence's act; log it at a bounded rate, with the running total."""
        self.counts[what] = self.counts.get(what, 0) + 1
        self.quiet.emit(what, level, event, total=self.counts[what], **fields)

    # -- stopping --------------------------------------------------------------------

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Stop accepting, close idle connections, give answers in progress ``grace``
        seconds, then cancel them and drop every connection."""
        self._closing = True
        self._pause()
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        for task in list(self._starting):
            task.cancel()
        for connection in list(self.open):
            connection.shutdown()
            if connection.streaming and connection.flow.write_paused and connection.transport is not None:
                connection.transport.abort()  # a stream its client does not read: it cannot end
        if self.state.tasks:
            await asyncio.wait(list(self.state.tasks), timeout=grace)
        for task in list(self.state.tasks):
            task.cancel()
        for connection in list(self.open):
            if connection.transport is not None:
                connection.transport.abort()


class _UvicornLog:
    """uvicorn's ``uvicorn.error`` logger for Patrol's connections: its lines (one per
    malformed request, one per failed handler) go to Patrol's log at a bounded rate."""

    level = logging.INFO  # uvicorn compares this with its TRACE level before tracing

    def __init__(self, quiet: QuietLog) -> None:
        self.quiet = quiet

    def _emit(self, level: str, msg: str, *args: Any, exc_info: Any = None, **_: Any) -> None:
        text = msg % args if args else msg
        fields: dict[str, Any] = {}
        if exc_info is not None:
            fields["exc_info"] = exc_info
        self.quiet.emit(("uvicorn", text), level, text.strip(), **fields)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        pass

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        pass

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("warning", msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._emit("error", msg, *args, **kwargs)

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        if level >= logging.WARNING:
            self._emit("warning" if level < logging.ERROR else "error", msg, *args, **kwargs)
