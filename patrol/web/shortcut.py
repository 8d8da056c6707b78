"""``/api/`` answered where its request was parsed: the same answer, no task, no ASGI stack.

The API's own work on an HTTP ping (:meth:`patrol.api.handler.Api.handle`) was about a
fifth of what the ping cost Patrol; the rest was carrying it there and back: an asyncio
task per request, Starlette's middleware, router, request and response objects, and
uvicorn's ASGI messages, each a few coroutine frames deep. A request to ``/api/`` (GET
or POST) whose head and body came in one read, the first request of that read, is
answered by :class:`ApiShortcut` right when the parser completes it
(:class:`patrol.web.protocols.HttpToolsConnection`): the same gate
(:meth:`patrol.web.auth.Gate.check`), the same reading
(:func:`patrol.web.bodies.request_in`), the same handler, and an answer whose bytes are
those uvicorn would have sent. A handler that fails answers 500 in the API's shape and
the connection closes, as on the ASGI way.

Every other request takes the ASGI way as before, and so does an ``/api/`` request that
does not qualify: a body that goes on in a later read or is larger than the API takes,
a chunked body, ``Expect: 100-continue``, a request pipelined behind another, an answer
while the client is not reading the ones before it (uvicorn waits for it to drain).
"""

from __future__ import annotations

from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

try:
    from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE
except ImportError:  # no httptools: only its connections take the shortcut
    pass

from patrol.api.wire import MAX_BODY, request_from_query
from patrol.web.auth import MAX_PING_BODY, BodyNeeded, Gate
from patrol.web.bodies import request_in

#: header lines kept checked (content-length and the content-type: a few hundred kinds)
MAX_LINES = 1024
#: the largest body the shortcut takes: larger ones are refused (413) on the ASGI way
MAX_SHORTCUT_BODY = min(MAX_BODY, MAX_PING_BODY)


class ApiShortcut:
    """What ``/api/`` answers, for a request that is wholly in: ``answer`` is the route's
    handler once its request is read, ``failed`` the answer to a handler that raised."""

    def __init__(self, gate: Gate, answer: Callable[[Request, Any], Response],
                 failed: Callable[[Request, Exception], Response]) -> None:
        self.gate = gate
        self._answer = answer
        self._failed = failed
        #: header lines that passed uvicorn's checks (the API's answers have few kinds)
        self._lines: dict[tuple[bytes, bytes], bytes] = {}

    @staticmethod
    def takes(scope: Scope) -> bool:
        """May the request whose head is ``scope`` be answered here once its body is in?"""
        if scope["path"] != "/api/" or scope["method"] not in ("GET", "POST"):
            return False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > MAX_SHORTCUT_BODY:
                    return False
            elif name == b"transfer-encoding":
                return False
        return True

    def answer(self, scope: Scope, body: bytes) -> tuple[Response, Exception | None]:
        """The answer to a request :meth:`takes` took, with its body; and the exception
        of a failed handler (the connection closes after its answer)."""
        gate = self.gate
        request = Request(scope)
        try:
            refusal = gate.check(scope, request)  # (one Request: its headers are parsed once)
            if isinstance(refusal, BodyNeeded):
                refusal = gate.check_ping(scope, body)
            if refusal is not None:
                gate.count(scope, refusal)
                return refusal, None
            return self._answer(request, request_in(request, body, request_from_query)), None
        except Exception as exc:  # noqa: BLE001 - as Starlette's ServerErrorMiddleware: 500, logged
            return self._failed(request, exc), exc

    def respond(self, connection: Any, cycle: Any) -> None:
        """Answer ``cycle``'s request (taken, its body in) on its ``connection`` (a
        :class:`patrol.web.protocols.HttpToolsConnection`), as uvicorn's cycle sends an
        ASGI answer (``RequestResponseCycle.send``) and its task ends."""
        connection._observe()  # inside a request, its body in: noted as for a task's request
        response, exc = self.answer(cycle.scope, bytes(cycle.body))
        cycle.body = bytearray()
        cycle.response_started = True
        transport = connection.transport  # a CoalescingTransport: nothing to wait for, it goes now
        try:
            head = self._head(response.status_code, connection.server_state.default_headers + response.raw_headers,
                              cycle)
        except RuntimeError as refused:  # a header uvicorn refuses: as there, no answer, logged, closed
            connection.logger.error("Exception in ASGI application\n", exc_info=refused)
            transport.close()
            return
        transport.write_whole(head + response.body)
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            transport.close()
        cycle.on_response()
        if exc is not None:  # as uvicorn after a failed handler's answer: logged, closed
            connection.logger.error("Exception in ASGI application\n", exc_info=exc)
            transport.close()

    def _head(self, status: int, headers: list[tuple[bytes, bytes]], cycle: Any) -> bytes:
        """An answer's status line and headers, byte for byte as uvicorn's httptools
        cycle writes those of an answer with a Content-Length (the API's always have
        one), after the same checks of each header."""
        content = [STATUS_LINE[status]]
        close = False
        lines = self._lines
        for header in headers:
            line = lines.get(header)
            if line is None:
                name, value = header
                if HEADER_RE.search(name):
                    raise RuntimeError("Invalid HTTP header name.")
                if HEADER_VALUE_RE.search(value):
                    raise RuntimeError("Invalid HTTP header value.")
                line = name.lower() + b": " + value + b"\r\n"
                if len(lines) < MAX_LINES:
                    lines[header] = line
            if line[:11] == b"connection:" and b"close" in [t.lower().strip() for t in header[1].split(b",")]:
                cycle.keep_alive = False
                close = True
            content.append(line)
        if not cycle.keep_alive and not close:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        return b"".join(content)
