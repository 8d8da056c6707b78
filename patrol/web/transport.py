"""The HTTP transport's web stack: JSON API, status, and the web GUI.

A Starlette app served by uvicorn *inside Patrol's event loop*. Patrol binds the socket
itself (a bind failure is a clear error, not uvicorn's ``sys.exit``) and does not run
uvicorn's 10 Hz housekeeping loop, so an idle Patrol does not wake up.

Routes of the original: ``/status/`` (any method), ``/api/`` (GET with a
query, POST with a JSON body; 405 otherwise); new: ``/metrics`` (Prometheus,
:mod:`patrol.web.metrics`, also on the ``metrics`` listener) and ``/events`` (the event
stream, :mod:`patrol.web.events`); ``/api`` and ``/status`` redirect to the
slashed path, keeping the query (308 instead of 301 for methods other than GET/HEAD,
so a POST survives the redirect). Every error is a JSON ``{"errors": [...]}`` with a
4xx status: bodies over :data:`patrol.api.wire.MAX_BODY` get 413, browser requests from another site
get 403 (a web page must not be able to toggle apps through a visitor's browser).
Every route is behind :class:`patrol.web.auth.Gate`: ``http.auth``, the rate limit beyond
loopback and the DNS-rebinding check; guesses of item secrets are throttled here.
Connections are accepted and timed by :mod:`patrol.web.connections` (deadlines, a cap
that idle connections make room under, descriptors kept for the apps). The transport
plugin itself (:mod:`patrol.web.http_plugin`) binds the sockets and loads this module
only once the apps were started.
"""

from __future__ import annotations

import socket
from typing import Any, Awaitable, Callable

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import Receive, Scope, Send

from patrol.web import auth
from patrol.api.access import is_ping_only, secret_credential, too_many
from patrol.api.wire import dumps, request_from_query
from patrol.web.connections import Limits, Listener
from patrol.web.events import events_endpoint
from patrol.web.metrics import MetricsPage
from patrol.api.view import KernelView
from patrol.plugin.model import Listen
from patrol.web.bodies import Refused, cross_site, read_request
from patrol.web.shortcut import ApiShortcut
from patrol.web.chunked import chunked_response
from patrol.web.lazy_routes import LazyRoutes


log = structlog.get_logger("patrol.http")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status, media_type="application/json; charset=utf-8")


def errors(status: int, *messages: str) -> Response:
    return json_response({"errors": list(messages)}, status)


def serve(sock: socket.socket, app: Starlette, limits: Callable[[], Limits]) -> Listener:
    """Serve ``app`` on the listening ``sock`` inside Patrol's loop (see connections.py)."""
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False,
        date_header=False, server_header=False,
        limit_concurrency=None,  # the listener caps connections (and pauses accept, never 503)
        proxy_headers=False,  # the peer address is the socket's: X-Forwarded-For is not believed
        ws="none",  # no WebSocket route: an installed websockets must not take connections out of Listener's hands
    )
    config.load()
    listener = Listener(sock, config, limits, getattr(app.state, "shortcut", None))
    listener.start()
    return listener


def build_metrics_app(view: KernelView, metrics: MetricsPage, settings: Callable[[], Listen]) -> Starlette:
    """The metrics listener's app: ``/metrics`` only, behind a gate of its own settings."""
    access = auth.Access(view, settings, login=False)
    return Starlette(routes=[Route("/metrics", AnyMethod(metrics.endpoint))],
                     exception_handlers={ClientDisconnect: client_left, Exception: internal_error},
                     middleware=[Middleware(auth.Gate, access=access)])


def build_app(view: KernelView, metrics: MetricsPage | None = None) -> Starlette:
    """The Starlette app of every HTTP route: the original's API, then the GUI's."""
    api = view.api
    metrics = metrics or MetricsPage(view)
    async def status(request: Request) -> Response:
        # built in steps and sent in chunks: with thousands of items, one go would stall the loop (patrol.util.steps)
        return chunked_response(await api.status_json(), "application/json; charset=utf-8")

    def refuse(status: int, *messages: str) -> Response:
        """An API request refused before it reached the API: counted as its answers are."""
        api.requests.count("http", status)
        return errors(status, *messages)

    async def api_endpoint(request: Request) -> Response:
        return api_answer(request, await read_request(request, request_from_query))

    def api_answer(request: Request, parsed: Any) -> Response:
        """The answer to ``/api/`` once its request is read (:func:`read_request`)."""
        if isinstance(parsed, Refused):
            return refuse(parsed.status, *parsed.messages)
        token_less_ping = request.scope.get(auth.HOW_KEY) == "ping"
        if token_less_ping and not is_ping_only(parsed):  # the gate let in a ping: nothing else
            return refuse(401, auth.REQUIRED)
        credential = secret_credential(parsed)  # guessing an item's secret is throttled
        wait = auth.retry_after(request, credential) if credential else 0
        if wait:
            return refuse(429, too_many(wait))
        result = api.handle(parsed, "http")
        if credential and "Secret Invalid" in result.body.get("errors", ()):
            auth.record_failure(request, credential)
        answer = without_keyvalues(result.body) if token_less_ping else result.body
        return json_response(answer, result.status)

    async def reload_endpoint(request: Request) -> Response:
        """``POST /-/reload``: re-read the config file and apply the difference (as SIGHUP)."""
        refused = cross_site(request)
        if refused:
            return errors(403, refused)
        if request.method != "POST":
            return errors(405, "Invalid Method: POST to reload")
        result = await view.reload()
        if result.get("errors"):
            return json_response({"errors": result["errors"]}, 400)
        return json_response(result)

    async def openapi_endpoint(request: Request) -> Response:
        """``GET /openapi.json``: the API's OpenAPI document (patrol/api/openapi.py)."""
        if request.method not in ("GET", "HEAD"):
            return errors(405, "Invalid Method: GET the document")
        from patrol.api import openapi  # imported on first use: most Patrols never serve it

        return json_response(openapi.document())

    routes: list[BaseRoute] = [
        Route("/openapi.json", AnyMethod(openapi_endpoint)),
        Route("/-/reload", AnyMethod(reload_endpoint)),
        Route("/status", AnyMethod(slash_redirect)),
        Route("/status/{rest:path}", AnyMethod(status)),
        Route("/api", AnyMethod(slash_redirect)),
        Route("/api/", AnyMethod(api_endpoint)),
        LazyRoutes(lambda: log_routes(view), "the log browser", paths=("/api/logs",)),
        Route("/metrics", AnyMethod(metrics.endpoint)),
        Route("/events", AnyMethod(events_endpoint(view))),
    ]
    routes.append(LazyRoutes(lambda: gui_routes(view), "the GUI"))  # the GUI's code loads with its first page
    access = auth.Access(view)  # every route is behind the gate: rate limit, then http.auth
    app = Starlette(routes=routes, exception_handlers={ClientDisconnect: client_left, Exception: internal_error},
                    middleware=[Middleware(auth.Gate, access=access)])
    # whole pings (and other /api/ requests) are answered inside their connection: no task, no ASGI stack
    app.state.shortcut = ApiShortcut(auth.Gate(app, access), api_answer, failed)
    return app


def log_routes(view: KernelView) -> list[BaseRoute]:
    from patrol.web.logs_api import LogLines  # the log reader: loaded by the first /api/logs

    return [Route("/api/logs", AnyMethod(LogLines(view.supervisor).endpoint))]


def gui_routes(view: KernelView) -> list[BaseRoute]:
    from patrol.web import gui  # Jinja2, the templates, the pages: megabytes an API-only Patrol never needs

    return gui.routes(view)


def without_keyvalues(body: dict[str, Any]) -> dict[str, Any]:
    """An answer to a ping let in without the token: the secret that keeps an app alive
    does not read its key/values (as UDP's answers, which never carry them)."""
    body = {k: v for k, v in body.items() if k != "keyvalue"}
    if isinstance(body.get("history"), list):
        body["history"] = [{k: v for k, v in r.items() if k != "keyvalue"} if isinstance(r, dict) else r
                           for r in body["history"]]
    return body


class AnyMethod:
    """A request handler as an ASGI app: Starlette then leaves every method to it
    (a plain function endpoint would be GET-only, answering others with a text 405)."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = request_response(handler)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def slash_redirect(request: Request) -> Response:
    """``/api`` -> ``/api/`` with the query kept, as Go's ServeMux does."""
    url = request.url.path + "/" + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(url, 301 if request.method in ("GET", "HEAD") else 308)


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug must still answer in the API's shape (and never echo the request)."""
    return failed(request, exc)


def failed(request: Request, exc: Exception) -> Response:
    log.error("request failed", path=request.url.path, method=request.method, error=type(exc).__name__)
    return errors(500, "Internal Error: see Patrol's log")


async def client_left(request: Request, exc: Exception) -> Response:
    """The client went away (or was cut off by its deadline) while sending its body: no
    bug, and nobody to answer."""
    return errors(400, "Invalid Request: the client disconnected")
