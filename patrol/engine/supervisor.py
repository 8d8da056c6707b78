"""The supervisor: one asyncio loop that owns every app's and service's state.

No locks and no threads for supervision: runners are driven by events (child exits,
pidfds, pings, timers) and reconciled by a tick. Blocking work runs as subprocesses
(service commands) so the loop never stalls.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import structlog

from patrol.config.instances import expand_all
from patrol.config.load import adjust_config
from patrol.engine.app_runner import AppRunner
from patrol.engine.app_stop import sweep_strays
from patrol.engine.exit_with import main_ended
from patrol.engine import heap_trim
from patrol.engine.instance_sets import InstanceSets
from patrol.plugin.model import AppConfig, PatrolConfig, ServiceConfig
from patrol.engine import descriptors
from patrol.engine.logrouter import LogRouter
from patrol.engine.cpu import CpuSampler
from patrol.engine.depends import Dependencies, start_order
from patrol.engine.ownership import Ownership
from patrol.plugin.loader import Plugins
from patrol.engine.reaper import Reaper, become_subreaper
from patrol.engine.signals import SignalRouter
from patrol.engine.spawn_batch import SpawnBatch
from patrol.engine.host import Attached, EventSink
from patrol.engine.item_state import State
from patrol.engine.state_writer import Persist, StateWriter
from patrol.engine.state_file import Store

log = structlog.get_logger("patrol.supervisor")


def _ignored(sig: int) -> None:
    log.debug("signal ignored", signal=signal.Signals(sig).name)


if TYPE_CHECKING:
    # imported when a service is made: a Patrol without services never loads them
    from patrol.engine.service_runner import ServiceRunner

    Runner = AppRunner | ServiceRunner
    R = TypeVar("R", AppRunner, ServiceRunner)
#: seconds from the end of a start or reload burst to handing back the memory it freed
#: (:mod:`patrol.engine.heap_trim`): its follow-up work is over well before
HEAP_SETTLE = 2.0


class Supervisor:
    """Runs the apps and services of one config.

    :param config: the validated config.
    :param plugins: loaded plugins (registries and the trigger hook).
    :param clock: monotonic clock for deadlines; tests may pass their own.
    :param wall: wall clock for timestamps.
    """

    def __init__(self, config: PatrolConfig, plugins: Plugins, *, store: Store | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.plugins = plugins
        self.store = store
        #: decides when changes reach the state file (None: nothing is kept)
        self.writer = StateWriter(store, self.persistent, wall) if store is not None else None
        self.now = clock
        self.wall = wall
        self.instance_id = str(uuid.uuid4())
        self.started: float | None = None
        self.started_mono = clock()
        self.shutting_down = False
        # Set by run(), on the loop: nothing reads them before (a None check on every use
        # would only hide that rule), hence the ignores.
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by run()
        self.signals: SignalRouter = None  # type: ignore[assignment]  # set by run()
        self.reaper: Reaper = None  # type: ignore[assignment]  # set by run()
        self.logs: LogRouter = None  # type: ignore[assignment]  # set by run(): every app's output pipes
        self.owners = Ownership()  # which process is whose: the proof behind every signal
        self.spawns = SpawnBatch()  # start bursts: spawn all, then what each spawn needs
        self.cpu = CpuSampler()  # CPU and memory of the apps, for every reader
        self.sets = InstanceSets(self)  # the sets of instances: their sizes, scaling, set-wide toggles
        self.dependencies = Dependencies(self.find, config, self.sets.members)  # depends-on: start and stop order
        self.reload_lock = asyncio.Lock()  # one reload or set change at a time
        items = expand_all(config.apps, self.sets.load(config))
        self.apps: dict[str, AppRunner] = {i: self._app_runner(c) for i, c in sorted(items.items())}
        self.services: dict[str, ServiceRunner] = {
            i: self._service_runner(c) for i, c in sorted(config.services.items())
        }
        #: started once the loop runs, stopped with the apps (the daemon attaches its transports)
        self.attached: list[Attached] = []
        #: where events go (the daemon renders them for the observers); None: nowhere
        self.events: EventSink | None = None
        self._reload_task: asyncio.Task[None] | None = None
        self._reload_pending = False
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._freeze = False
        self.heap_settle = HEAP_SETTLE  # seconds from a burst to handing back its freed memory
        #: what ``patrol run`` exits with: 0, or the exit of the ``exit-with`` app
        self.exit_code = 0

    # -- running ---------------------------------------------------------------------

    async def run(self, *, daemon_signals: bool = False, freeze_heap: bool = False) -> None:
        """Supervise until :meth:`request_shutdown`, then stop everything and return.

        ``daemon_signals``: handle the daemon's signals (``patrol run`` does; a program
        embedding Patrol may keep its own): SIGTERM, SIGINT, SIGQUIT shut down, SIGHUP
        reloads the config, SIGUSR1/SIGUSR2 are ignored (the original's app signals).
        ``freeze_heap``: see :func:`freeze_heap` (``patrol run`` does; it concerns the
        whole process, so a program embedding Patrol decides for itself).
        """
        self._freeze = freeze_heap
        self.loop = asyncio.get_running_loop()
        self.signals = SignalRouter(self.loop)
        self.reaper = Reaper(self.loop, self.signals, reaped=self.owners.exited, before_reap=self.spawns.flush)
        self.reaper.install()
        # two pipes and two files per app; children get Patrol's original limit back
        descriptors.raise_soft_limit(descriptors.wanted(len(self.apps) + len(self.services)))
        self.logs = LogRouter(self.loop, [runner.config for runner in self.apps.values()],  # every copy of a set
                              on_problem=partial(_log_problem, self.apps))
        if self.writer is not None:
            self.writer.start(self.loop)
        if daemon_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                self.signals.add(sig, self.request_shutdown)
            self.signals.add(signal.SIGHUP, self.request_reload)
            for sig in (signal.SIGUSR1, signal.SIGUSR2):
                self.signals.add(sig, partial(_ignored, sig))
        if not become_subreaper():
            log.warning("could not become a child subreaper; orphans of apps are not reaped by Patrol")
        self.started = self.wall()
        self.started_mono = self.now()
        try:
            for attached in self.attached:
                await attached.start()  # an OSError (a transport cannot bind) stops Patrol
            self.emit("patrol.started")
            start_all(self.runners(), self.spawns)
            self.logs.prune_all()
            log.info("patrol started", apps=len(self.apps), services=len(self.services), pid=os.getpid())
            self._freeze_heap()
            while not self._stop.is_set():
                try:
                    await asyncio.wait_for(self._stop.wait(), self.config.tick_every)
                except asyncio.TimeoutError:
                    self.tick()
        finally:
            await self._shutdown()
            self.signals.close()
            self._stopped.set()

    def tick(self) -> None:
        self.emit("patrol.tick")
        self.reaper.reap()  # as a container's init, nothing may stay a zombie even if a SIGCHLD got lost
        self.logs.tick()
        if self.writer is not None:
            self.writer.check()  # a state file deleted while nothing was written
        for runner in self.runners():
            try:
                runner.tick()
            except Exception:  # noqa: BLE001 - one runner's bug must not stop the others
                log.exception("tick failed", id=runner.id, group=runner.group)
        self.sweep_strays()

    def sweep_strays(self) -> None:
        """Hand each process re-parented to Patrol to the app it is proven to belong to."""
        sweep_strays(self.owners, self.apps)

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown (idempotent; safe from signal handlers)."""
        if not self.shutting_down:
            self.shutting_down = True
            log.info("shutdown requested")
            self.emit("patrol.shutdown")
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _shutdown(self) -> None:
        self.shutting_down = True
        self.logs.stop_pruning()
        self.emit("patrol.stopped")
        # Everything at once (transports close while the apps stop), except that an item
        # stops only once the items that depend on it have (reverse start order).
        items = self.dependencies.stop_in_order(self.apps.values(), self.services.values())
        results = await asyncio.gather(*[a.stop() for a in self.attached], *items.values(), return_exceptions=True)
        owners = [attached.name for attached in self.attached] + list(items)
        for owner, result in zip(owners, results):
            if isinstance(result, BaseException):
                log.error("stop failed during shutdown", stopping=owner, error=repr(result), exc_info=result)
        for runner in self.runners():
            runner.emit(f"{runner.group}.shutdown")
        self.sets.close()
        self.reaper.reap()  # orphans that ended with the apps
        await self.logs.close()
        if self.writer is not None:
            self.writer.close()  # a last write; what fails now is logged
        self.started = None
        log.info("patrol stopped")

    # -- reload ----------------------------------------------------------------------

    async def reload(self, new: PatrolConfig) -> dict[str, list[str]]:
        """Apply a new, already validated config by its difference only.

        New apps and services start; removed ones stop (a removed *service* is only no
        longer watched: Patrol never stops a system service it stops managing); changed
        ones are stopped and started again with the new config; unchanged ones are not
        touched (same pid). State (toggles, history, key/values, CAS) is carried over to
        a changed item, so runtime toggles survive a reload.
        """
        from patrol.engine.reload import apply_table  # (loaded at the first reload)
        async with self.reload_lock:
            if self._freeze:
                gc.unfreeze()  # what the reload drops must become collectable again
            try:
                old = self.config
                self.config = new
                descriptors.raise_soft_limit(descriptors.wanted(len(new.apps) + len(new.services)))
                report: dict[str, list[str]] = {"added": [], "removed": [], "changed": [], "unchanged": []}
                forget = self.writer.forget if self.writer is not None else None
                current = {item_id: runner.config for item_id, runner in self.apps.items()}
                items = expand_all(new.apps, self.sets.load(new))
                self.logs.reindex(items.values())  # before new apps start
                await apply_table(self.apps, current, items, self._app_runner, "app", report, forget,
                                  self.spawns.burst)
                await apply_table(self.services, old.services, new.services, self._service_runner, "service",
                                  report, forget, self.spawns.burst)
                self.dependencies.reloaded(new, self.runners())
                log.info("reloaded", **{k: v for k, v in report.items() if k != "unchanged"})
                self.commit()  # new items' first rows, before the report is answered
                return report
            finally:
                self._freeze_heap()

    def _freeze_heap(self) -> None:
        if self._freeze:
            freeze_heap()
            self.loop.call_later(self.heap_settle, heap_trim.release_after_burst)

    def request_reload(self) -> None:
        """SIGHUP: reload soon. A burst of requests costs at most one more reload."""
        if self._reload_task is not None and not self._reload_task.done():
            self._reload_pending = True
            return
        self._reload_task = self.loop.create_task(self._reload_while_asked())

    async def _reload_while_asked(self) -> None:
        while True:
            self._reload_pending = False
            await self.reload_config()
            if not self._reload_pending or self.shutting_down:
                return

    async def reload_config(self) -> dict[str, list[str]]:
        """Re-read the config file (SIGHUP, ``patrol reload``, the API) and apply it.

        An invalid config changes nothing: the result has ``errors`` and the running
        config stays.
        """
        if self.config.source is None:
            return {"errors": ["this Patrol was not started from a config file"]}
        from patrol.engine.reload import read_config  # (loaded at the first reload)
        config, errors = await read_config(self.config.source, self.plugins)
        if config is None:
            return {"errors": errors}
        return await self.reload(adjust_config(config))

    @property
    def log_output(self) -> LogRouter:
        """The apps' output beyond the files (see :class:`patrol.engine.readside.Reader`)."""
        return self.logs

    # -- runners ---------------------------------------------------------------------

    def make_app(self, config: AppConfig) -> AppRunner:  # a new copy of a set
        self.logs.index.add(config)  # its log directory's limits and current-log name
        return self._app_runner(config)

    def instances(self, set_id: str) -> int:
        return self.sets.size(set_id)

    def ended(self, runner: Any, start_failed: bool = False) -> bool:
        """An app's run ended by itself: see :func:`patrol.engine.exit_with.main_ended`."""
        return main_ended(self, runner, start_failed)

    def _app_runner(self, config: AppConfig, state: State | None = None) -> AppRunner:
        runner = AppRunner(self, config, self.plugins.keepalives.get(config.keepalive))
        return self._attach(runner, state)

    def _service_runner(self, config: ServiceConfig, state: State | None = None) -> ServiceRunner:
        from patrol.engine.service_backends import backend  # (a Patrol without services never loads them)
        from patrol.engine.service_runner import ServiceRunner
        backends = {action: backend(config, name, self.plugins) for action, name in config.management.items()}
        return self._attach(ServiceRunner(self, config, backends), state)

    def _attach(self, runner: R, state: State | None) -> R:
        """Give a new runner its state: carried over (reload), restored (store), or fresh."""
        if state is not None:
            runner.state = state
        elif self.store is not None:
            row = self.store.load(runner.group, runner.id, runner.state)
            if row is not None:
                runner.restored(row)
        if self.writer is not None:
            runner.state.on_change = Persist(self.writer, runner)
            # written with the first group commit: a fresh item's CAS, or one raised
            # after a crash, is then on disk before anyone can act on it
            self.writer.changed(runner, durable=True)
        return runner

    def commit(self) -> bool:
        """Called before an answer is sent: every change made so far is written (one
        transaction). False when the state file refuses writes: then memory alone has it."""
        return self.writer.commit() if self.writer is not None else True

    @property
    def store_error(self) -> str | None:
        """Why the state file refuses writes; None while it takes them."""
        return self.writer.error if self.writer is not None else None

    @property
    def store_error_since(self) -> float | None:
        return self.writer.error_since if self.writer is not None else None

    # -- helpers ---------------------------------------------------------------------

    def runners(self) -> list[Runner]:
        return [*self.apps.values(), *self.services.values()]

    def persistent(self) -> list[Any]:
        """Everything the state file keeps: the items, and the sizes of sets."""
        return [*self.runners(), *self.sets.records.values()]

    def find(self, group: str, item_id: str) -> Runner | None:
        table: dict[str, Any] = self.apps if group == "app" else self.services
        return table.get(item_id)

    def emit(self, name: str, runner: Runner | None = None, **extra: Any) -> None:
        """Deliver an event to the observers (no work at all when there are none)."""
        if self.events is not None and self.events.wanted():
            self.events.emit(name, runner, **extra)


def start_all(runners: list[Runner], spawns: SpawnBatch) -> None:
    """Start every item, dependencies first, as one burst (:mod:`patrol.engine.spawn_batch`)."""
    with spawns.burst():
        for runner in start_order(runners):
            try:
                runner.start()
            except Exception:  # noqa: BLE001 - one runner's bug must not stop the others
                log.exception("start failed", id=runner.id, group=runner.group)


def freeze_heap() -> None:
    """Keep what exists now (config, runners, states) out of the garbage collector.

    A full collection walks every tracked object: with 10,000 apps that is ~200,000
    objects and ~80 ms during which the loop does nothing else, at a moment no one
    chooses (any request may trigger it). What Patrol builds at start and on reload
    lives until the next reload, so it is frozen (``gc.freeze``) after a collection
    of its own garbage; a reload unfreezes first, so what it drops is collected.
    """
    gc.collect()
    gc.freeze()


def _log_problem(apps: dict[str, AppRunner], app_id: str, message: str | None) -> None:
    """An app's log file cannot be written (or can again): the app's fault says so."""
    runner = apps.get(app_id)
    if runner is None:
        return
    if message is not None or (runner.fault_message or "").startswith("cannot write the log file"):
        runner.control.fault(message)
