"""The wiring of one running Patrol: state file, supervisor, API, plugins' view, transports.

Each layer is built here, on top of the one below it, so no lower layer ever constructs
a higher one: the engine knows nothing of the API (it is handed an event sink), the API
nothing of the transports (they are handed its view). ``patrol run`` and programs that
embed Patrol build a :class:`Daemon`; tests of the engine alone may build a
:class:`~patrol.engine.supervisor.Supervisor` without it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import structlog

from patrol.api.handler import Api
from patrol.api.view import EventPublisher, KernelView
from patrol.engine.state_file import Store
from patrol.engine.supervisor import Supervisor
from patrol.plugin.loader import Plugins
from patrol.plugin.model import PatrolConfig
from patrol.plugin.transport import Transport

log = structlog.get_logger("patrol.supervisor")


class Daemon:
    """One Patrol: its supervisor, its API and the transports every plugin registered.

    :param config: the validated config.
    :param plugins: loaded plugins (registries and the trigger hook).
    :param store: the state file; None keeps state in memory only.
    :param clock: monotonic clock for deadlines; tests may pass their own.
    :param wall: wall clock for timestamps.
    """

    def __init__(self, config: PatrolConfig, plugins: Plugins, *, store: Store | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.supervisor = Supervisor(config, plugins, store=store, clock=clock, wall=wall)
        self.api = Api(self.supervisor)
        self.view = KernelView(self.supervisor, self.api)
        self.supervisor.events = EventPublisher(plugins, self.api, self.view)
        self.transports = Transports(plugins, self.view)

    async def run(self, *, transports: bool = True, daemon_signals: bool = False, freeze_heap: bool = False) -> None:
        """Supervise until :meth:`Supervisor.request_shutdown`; see :meth:`Supervisor.run`.

        ``transports``: start every registered transport once the loop runs (an address
        that cannot be bound stops Patrol); tests of the engine leave them out.
        """
        if transports and self.transports not in self.supervisor.attached:
            self.supervisor.attached.append(self.transports)
        await self.supervisor.run(daemon_signals=daemon_signals, freeze_heap=freeze_heap)


class Transports:
    """Every registered transport, started on the supervisor's loop and stopped with it.

    A transport may also have ``after_start()``: it is called on the loop's first turn
    after :meth:`start`, which is after the supervisor has started the apps (the
    supervisor starts them without yielding once its attachments are started). The
    kernel's HTTP transport binds its sockets in ``start()`` and loads its web stack
    there, so the first app is not kept waiting for it (patrol/web/http_plugin.py).
    """

    name = "transports"

    def __init__(self, plugins: Plugins, view: KernelView) -> None:
        self.plugins = plugins
        self.view = view
        self.running: list[Transport] = []
        self._after_start: asyncio.Handle | None = None

    async def start(self) -> None:
        """Start every transport. One that cannot bind its address (``OSError``) stops
        Patrol, as documented; one that fails otherwise (a plugin's bug) is logged with
        its plugin and left out, and Patrol runs without it."""
        for name, cls in self.plugins.transports:
            try:
                transport = cls(self.view, self.view)  # (patrol, api): both constructors of Transport work
                await transport.start()
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin's bug must not stop Patrol
                self.plugins.failed_in(self.plugins.transports, name)
                log.error("transport failed to start; running without it", transport=name,
                          plugin=self._origin(name), error=f"{type(exc).__name__}: {exc}", exc_info=exc)
                continue
            self.running.append(transport)
            log.info("listening", transport=name, address=transport.address)
        self._after_start = asyncio.get_running_loop().call_soon(self._started)

    def _started(self) -> None:
        self._after_start = None
        for transport in self.running:
            after_start = getattr(transport, "after_start", None)
            if after_start is None:
                continue
            try:
                after_start()
            except Exception as exc:  # noqa: BLE001 - a plugin's bug must not stop Patrol
                log.error("transport failed after its start", transport=transport.name,
                          plugin=self._origin(transport.name), error=f"{type(exc).__name__}: {exc}", exc_info=exc)

    async def stop(self) -> None:
        """Stop them all at once; a failure is logged with its plugin, never raised."""
        if self._after_start is not None:  # stopped before the apps were started
            self._after_start.cancel()
            self._after_start = None
        results: list[Any] = await asyncio.gather(*(t.stop() for t in self.running), return_exceptions=True)
        for transport, result in zip(self.running, results):
            if isinstance(result, BaseException):
                log.error("stop failed during shutdown", error=repr(result), exc_info=result,
                          stopping=f"transport {transport.name} (plugin {self._origin(transport.name)})")

    def _origin(self, name: str) -> str:
        return self.plugins.origin(self.plugins.transports, name)
