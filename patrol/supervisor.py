"""The supervisor: one asyncio loop that owns every app's and service's state.

No locks and no threads for supervision: runners are driven by events (child exits,
pidfds, pings, timers) and reconciled by a tick. Blocking work runs as subprocesses
(service commands) so the loop never stalls.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any, Callable

import structlog

from .apps import AppRunner
from .config.model import PatrolConfig
from .events import Event
from .plugins import Plugins
from .process import Reaper, become_subreaper
from .services import ServiceRunner

log = structlog.get_logger("patrol.supervisor")

Runner = AppRunner | ServiceRunner


class Supervisor:
    """Runs the apps and services of one config.

    :param config: the validated config.
    :param plugins: loaded plugins (registries and the trigger hook).
    :param clock: monotonic clock for deadlines; tests may pass their own.
    :param wall: wall clock for timestamps.
    """

    def __init__(
        self,
        config: PatrolConfig,
        plugins: Plugins,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.plugins = plugins
        self.now = clock
        self.wall = wall
        self.instance_id = str(uuid.uuid4())
        self.started: float | None = None
        self.started_mono = clock()
        self.shutting_down = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by run()
        self.reaper: Reaper = None  # type: ignore[assignment]
        self.apps: dict[str, AppRunner] = {
            app_id: AppRunner(self, app, plugins.keepalives.get(app.keepalive))
            for app_id, app in sorted(config.apps.items())
        }
        self.services: dict[str, ServiceRunner] = {
            sid: ServiceRunner(
                self, svc, {action: plugins.services.get(name)(svc) for action, name in svc.management.items()}
            )
            for sid, svc in sorted(config.services.items())
        }
        self.transports: list[Any] = []
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self.api: Any = None

    # -- running ---------------------------------------------------------------------

    async def run(self, *, transports: bool = True) -> None:
        """Supervise until :meth:`request_shutdown`, then stop everything and return."""
        from .api import Api

        self.loop = asyncio.get_running_loop()
        self.reaper = Reaper(self.loop)
        self.reaper.install()
        if not become_subreaper():
            log.warning("could not become a child subreaper; orphans of apps are not reaped by Patrol")
        self.api = Api(self)
        self.started = self.wall()
        self.started_mono = self.now()
        try:
            if transports:
                await self._start_transports()
            self.emit("patrol.started")
            for runner in self.runners():
                runner.start()
            log.info("patrol started", apps=len(self.apps), services=len(self.services), pid=os.getpid())
            while not self._stop.is_set():
                try:
                    await asyncio.wait_for(self._stop.wait(), self.config.tick_every)
                except asyncio.TimeoutError:
                    self.tick()
        finally:
            await self._shutdown()
            self.reaper.uninstall()
            self._stopped.set()

    def tick(self) -> None:
        self.emit("patrol.tick")
        for runner in self.runners():
            try:
                runner.tick()
            except Exception:  # noqa: BLE001 - one runner's bug must not stop the others
                log.exception("tick failed", id=runner.id, group=runner.group)

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown (idempotent; safe from signal handlers)."""
        if not self.shutting_down:
            self.shutting_down = True
            log.info("shutdown requested")
            self.emit("patrol.shutdown")
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _start_transports(self) -> None:
        for name, cls in self.plugins.transports:
            transport = cls(self, self.api)
            await transport.start()
            self.transports.append(transport)
            log.info("listening", transport=name, address=transport.address)

    async def _shutdown(self) -> None:
        self.shutting_down = True
        self.emit("patrol.stopped")
        for transport in reversed(self.transports):
            try:
                await transport.stop()
            except Exception:  # noqa: BLE001
                log.exception("transport stop failed", transport=transport.name)
        stops = [runner.stop("shutdown") for runner in self.apps.values()]
        stops += [runner.stop("shutdown") for runner in self.services.values() if runner.config.stop_on_shutdown]
        results = await asyncio.gather(*stops, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.error("stop failed during shutdown", error=repr(result))
        for runner in self.runners():
            runner.emit(f"{runner.group}.shutdown")
        self.started = None
        log.info("patrol stopped")

    # -- helpers ---------------------------------------------------------------------

    def runners(self) -> list[Runner]:
        return [*self.apps.values(), *self.services.values()]

    def find(self, group: str, item_id: str) -> Runner | None:
        table: dict[str, Any] = self.apps if group == "app" else self.services
        return table.get(item_id)

    def emit(self, name: str, runner: Runner | None = None, **extra: Any) -> None:
        """Deliver an event to the observers (no work at all when there are none)."""
        if not self.plugins.has_observers():
            return
        if runner is None:
            event = Event(name, **extra)
        else:
            snapshot = self.api.snapshot(runner) if self.api is not None else {}
            record = extra.pop("record", None)
            if record is not None and self.api is not None:
                record = self.api.render_record(record, runner.group)
            event = Event(name, runner.group, runner.id, snapshot, record, **extra)
        self.plugins.trigger(self, event)
