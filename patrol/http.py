"""The HTTP transport (a kernel default plugin): JSON API, status, and the web GUI.

A Starlette app served by uvicorn *inside Patrol's event loop*. Patrol binds the socket
itself (a bind failure is a clear error, not uvicorn's ``sys.exit``) and does not run
uvicorn's 10 Hz housekeeping loop, so an idle Patrol does not wake up.
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .hookspecs import hookimpl
from .transport import Transport

if TYPE_CHECKING:
    from .api import Api
    from .supervisor import Supervisor

MAX_BODY = 64 * 1024
QUERY_FIELDS = {"id", "group", "toggle", "history", "secret", "cas"}


def dumps(body: Any, *, pretty: bool = True) -> bytes:
    """JSON as the original wrote it: TAB-indented plus newline, <>& escaped."""
    text = json.dumps(body, indent="\t") + "\n" if pretty else json.dumps(body, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def json_response(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status, media_type="application/json; charset=utf-8")


def parse_listen(address: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``:port`` or ``host`` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        host, port = address, ""
    host = host.strip("[]") or "0.0.0.0"
    if port and not port.isdigit():
        raise ValueError(f"bad port in listen address {address!r}")
    return host, int(port) if port else default_port


def bind(host: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


class HttpTransport(Transport):
    name = "http"

    def __init__(self, patrol: "Supervisor", api: "Api") -> None:
        super().__init__(patrol, api)
        self.app = build_app(patrol, api)
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None

    async def start(self) -> None:
        host, port = parse_listen(self.patrol.config.http.listen, 8421)
        self._sock = bind(host, port)
        self._sock.listen(1024)
        config = uvicorn.Config(
            self.app, lifespan="off", log_config=None, access_log=False,
            date_header=False, server_header=False, limit_concurrency=512,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[self._sock])
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.config.timeout_graceful_shutdown = 1
            await server.shutdown(sockets=[self._sock] if self._sock else None)
        self._sock = None

    @property
    def address(self) -> tuple[str, int] | None:
        return self._sock.getsockname()[:2] if self._sock is not None else None


def build_app(patrol: "Supervisor", api: "Api") -> Starlette:
    async def status(request: Request) -> Response:
        return json_response(api.status())

    async def api_endpoint(request: Request) -> Response:
        if request.method == "GET":
            parsed = request_from_query(request.query_params.multi_items())
            if isinstance(parsed, list):
                return json_response({"errors": parsed}, 400)
            result = api.handle(parsed, "http")
        elif request.method == "POST":
            body = await read_body(request)
            if body is None:
                return json_response({"errors": [f"Invalid Body: larger than {MAX_BODY} bytes"]}, 413)
            try:
                data = json.loads(body) if body.strip() else None
            except (ValueError, UnicodeDecodeError) as exc:
                return json_response({"errors": [f"Invalid Request: {exc}"]}, 400)
            result = api.handle(data, "http")
        else:
            return json_response({"errors": ["Invalid Method"]}, 405)
        return json_response(result.body, result.status)

    routes: list[BaseRoute] = [
        Route("/status", lambda r: RedirectResponse("/status/", 301), methods=None),
        Route("/status/{rest:path}", status, methods=None),
        Route("/api", lambda r: RedirectResponse("/api/", 301), methods=None),
        Route("/api/", api_endpoint, methods=None),
    ]
    try:
        from . import gui
    except ImportError:  # pragma: no cover - the GUI is part of the kernel
        gui = None  # type: ignore[assignment]
    if gui is not None:
        routes += gui.routes(patrol, api)
    return Starlette(routes=routes)


async def read_body(request: Request) -> bytes | None:
    """The request body, or None when it exceeds MAX_BODY (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def request_from_query(items: list[tuple[str, str]]) -> dict[str, Any] | list[str]:
    """Build an API request from ``GET /api/?id=&group=&toggle=&history=&secret=&cas=``."""
    request: dict[str, Any] = {}
    problems = []
    for key, value in items:
        if key not in QUERY_FIELDS:
            problems.append(f"{key}: unknown query parameter (known: {', '.join(sorted(QUERY_FIELDS))})")
        elif key == "history":
            request["history"] = True
        elif key in ("toggle", "cas"):
            if value == "":
                continue
            if not value.isdigit():
                problems.append(f"{key}: must be a non-negative integer (got {value[:40]!r})")
            else:
                request[key] = int(value)
        else:
            request[key] = value
    return problems or request


@hookimpl(trylast=True)
def patrol_register_transports(register):  # type: ignore[no-untyped-def]
    register(HttpTransport)
