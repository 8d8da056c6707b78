"""The HTTP transport as the kernel's default plugin: its sockets at start, its web stack later.

``patrol run`` loads this module with the plugins, long before the first app is spawned,
so it imports nothing of the web stack: uvicorn, Starlette and the routes
(:mod:`patrol.web.transport`, ~45 ms of imports) load in :meth:`HttpTransport.after_start`,
which :class:`patrol.daemon.Transports` calls once the supervisor has started every runner. The
listening sockets are bound and listening in :meth:`~HttpTransport.start`, so an address
that cannot be bound still stops Patrol before anything runs, and a client that connects
in between waits in the listen backlog until the app serves it: it is never refused.

A web stack that is not installed at all fails the plugin at load time, as any plugin
whose import fails. If it then fails to load or build (a broken install), Patrol logs it as a
transport that failed to start, closes the sockets (clients are refused, not left
hanging) and keeps supervising without HTTP, as it does for any transport that fails.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import socket
from typing import TYPE_CHECKING

import structlog

from patrol.api.view import KernelView
from patrol.engine import descriptors
from patrol.plugin.hookspecs import hookimpl
from patrol.plugin.model import Listen
from patrol.plugin.registry import Register
from patrol.plugin.transport import PatrolView, Transport
from patrol.util.net import bind, parse_listen

if TYPE_CHECKING:
    from patrol.web.connections import Limits, Listener

log = structlog.get_logger("patrol.http")


class HttpTransport(Transport):
    name = "http"

    def __init__(self, patrol: PatrolView, api: PatrolView | None = None) -> None:
        super().__init__(patrol, api)
        self.kernel = KernelView.of(patrol)
        self.listener: Listener | None = None
        self.metrics_listener: Listener | None = None
        self._sock: socket.socket | None = None
        self._metrics_sock: socket.socket | None = None
        self._closing: asyncio.Task[None] | None = None
        self._limits_config: object = None
        self._limits_made: dict[int, tuple[Listen, Limits]] = {}

    async def start(self) -> None:
        descriptors.raise_soft_limit()
        host, port = parse_listen(self.patrol.config.http.listen, 8421)
        self._sock = bind(host, port)
        self._sock.listen(1024)
        metrics = self.patrol.config.metrics
        if metrics is not None:  # its own listener for scrapers: /metrics only, its own token
            try:
                host, port = parse_listen(metrics.listen, 9421)
                self._metrics_sock = bind(host, port)
            except (OSError, ValueError) as exc:
                await self.stop()
                raise OSError(f"metrics.listen: {exc}") from None
            self._metrics_sock.listen(128)

    def after_start(self) -> None:
        """Load the web stack and serve the bound sockets (once the apps were started)."""
        if self._sock is None or self.listener is not None:  # stopped meanwhile, or serving already
            return
        try:
            from patrol.web import transport as web

            page = web.MetricsPage(self.kernel)
            self.listener = web.serve(self._sock, web.build_app(self.kernel, page),
                                          lambda: self._limits(self.patrol.config.http))
            metrics = self.patrol.config.metrics
            if self._metrics_sock is not None and metrics is not None:
                settings = lambda: self.patrol.config.metrics or metrics  # noqa: E731 - a reload may drop it
                app = web.build_metrics_app(self.kernel, page, settings)
                self.metrics_listener = web.serve(self._metrics_sock, app, lambda: self._limits(settings()))
                log.info("listening", transport="metrics", address=self._metrics_sock.getsockname()[:2])
        except Exception as exc:  # noqa: BLE001 - a broken web stack must not stop the apps
            log.error("transport failed to start; running without it", transport=self.name, plugin="patrol.http",
                      error=f"{type(exc).__name__}: {exc}", exc_info=exc)
            self._closing = asyncio.get_running_loop().create_task(self.stop())  # held: a task must be referenced
            return
        if gc.get_freeze_count():  # the heap was frozen after the start: the web stack joins it
            gc.freeze()

    def _limits(self, listen: Listen) -> Limits:
        """The limits of the running config. Every connection asks on every request, so
        they are made once per config (a reload makes a new one) and listener section."""
        config = self.patrol.config
        if self._limits_config is not config:
            self._limits_config, self._limits_made = config, {}
        made = self._limits_made.get(id(listen))
        if made is None or made[0] is not listen:
            from patrol.web.connections import Limits

            made = self._limits_made[id(listen)] = (listen, Limits(
                client_timeout=listen.client_timeout, max_connections=listen.max_connections,
                items=len(config.apps) + len(config.services)))
        return made[1]

    async def stop(self) -> None:
        self.kernel.stream.close()  # event streams end first: a stream would hold its connection open
        for listener in (self.listener, self.metrics_listener):
            if listener is not None:
                await listener.close()
        self.listener = self.metrics_listener = None
        for sock in (self._sock, self._metrics_sock):
            if sock is not None:
                sock.close()
        self._sock = self._metrics_sock = None

    @property
    def address(self) -> tuple[str, int] | None:
        return self._sock.getsockname()[:2] if self._sock is not None else None


@hookimpl(trylast=True)
def patrol_register_transports(register: Register[Transport]) -> None:
    # the web stack loads only after the apps started; that it is installed at all is
    # known now (found, not imported), so a missing one fails the plugin as before
    # (``patrol check``, ``patrol plugins``, and strict mode's exit)
    for package in ("uvicorn", "starlette"):
        if importlib.util.find_spec(package) is None:
            raise ImportError(f"the HTTP transport needs {package!r}, which is not installed")
    register(HttpTransport)
