"""``GET /events``: the lifecycle events as Server-Sent Events (:mod:`patrol.api.stream`).

Behind the same gate as every route (``http.auth``). The query filters
(``?group=app&id=web&event=app.closed``, each repeatable; ``periodic=1`` adds the
per-tick and ping events), starts with recent events (``backlog=N``; ``follow=0``: only
those, then the end) and sets the heartbeat (``heartbeat=SECONDS``, default 15): a
comment line that keeps proxies from closing a quiet stream and lets both ends notice
a dead connection. ``Last-Event-ID`` resumes after that event.

The answer is a long-lived stream on Patrol's loop: the connection layer
(:mod:`patrol.web.connections`) is told so (small buffers; never shed or timed out
while it sends), a client that falls :data:`patrol.api.stream.QUEUE` events behind is
cut off, and every stream ends when Patrol stops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from patrol.api.stream import Frame, StreamQuery, Subscription, TooManySubscribers, parse_query
from patrol.api.wire import SESSION_COOKIE, dumps
from patrol.web import auth
from patrol.web.connections import CONNECTION_KEY, Connection

if TYPE_CHECKING:
    from patrol.api.view import KernelView

MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # and no proxy may hold frames back
HEARTBEAT_LINE = b": heartbeat\n\n"


def problem(status: int, *messages: str, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps({"errors": list(messages)}), status, headers=headers,
                    media_type="application/json; charset=utf-8")


def open_stream(view: "KernelView", request: Request, query: StreamQuery,
                last_id: str | None) -> Subscription | Response:
    """Subscribe, and tell the connection it carries a stream; or the refusal."""
    connection = request.scope.get("state", {}).get(CONNECTION_KEY)
    if isinstance(connection, Connection) and connection.listener.stream_room() <= 0:
        return problem(503, "Too many event streams: half of http.max-connections listen already; "
                       "try again later", headers={"Retry-After": "5"})
    try:
        subscription = view.stream.subscribe(query.filter, last_id, backlog=query.backlog, follow=query.follow)
    except TooManySubscribers as exc:
        return problem(503, f"Too many event streams: {exc}; try again later", headers={"Retry-After": "5"})
    if isinstance(connection, Connection):
        connection.stream()
        subscription.on_drop = connection.drop
    return subscription


def still_allowed(request: Request) -> Callable[[], bool]:
    """Is the credential that opened the stream still good? A stream outlives its request:
    a token changed by a reload, an expired GUI session, or auth added by a reload ends it."""
    access, how = auth.access_of(request), request.scope.get(auth.HOW_KEY)
    if access is None:
        return lambda: True
    if how == "token":
        scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
        given = auth.credential(scheme.lower(), value.strip()) or ""
        return lambda: access.token_ok(given)
    if how == "session":
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return lambda: access.session_ok(cookie)
    return lambda: access.auth is None  # it came in open: until a reload sets http.auth


async def frames(subscription: Subscription, heartbeat: float, render: Callable[[Frame], bytes | None],
                 allowed: Callable[[], bool] = lambda: True) -> AsyncIterator[bytes]:
    """What a stream sends until it ends (Patrol stops, the client leaves or is dropped, or
    its credential is no longer good: checked before every frame and heartbeat)."""
    try:
        while True:
            item = await subscription.next(heartbeat)
            if item is None or not allowed():
                return
            if isinstance(item, Frame):
                data = render(item)
                if data:
                    yield data
            else:
                yield item or HEARTBEAT_LINE
    finally:
        subscription.close()


def stream_response(subscription: Subscription, heartbeat: float, render: Callable[[Frame], bytes | None],
                    allowed: Callable[[], bool]) -> StreamingResponse:
    return StreamingResponse(frames(subscription, heartbeat, render, allowed), media_type=MEDIA_TYPE,
                             headers=HEADERS)


def events_endpoint(view: "KernelView") -> Callable[[Request], Awaitable[Response]]:
    async def events(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return problem(405, "Invalid Method: GET the event stream")
        parsed = parse_query(request.query_params.multi_items())
        if isinstance(parsed, list):
            return problem(400, *parsed)
        if request.method == "HEAD":  # the headers a GET gets, and no stream to hold open
            return Response(b"", media_type=MEDIA_TYPE, headers=HEADERS)
        subscription = open_stream(view, request, parsed, request.headers.get("last-event-id"))
        if isinstance(subscription, Response):
            return subscription
        return stream_response(subscription, parsed.heartbeat, _text, still_allowed(request))

    return events


def _text(frame: Frame) -> bytes:
    return frame.text
