"""One system service's supervision, without ever blocking the loop.

Each reconciliation is one task: run ``status``; then, as the original did every tick,
a running service with the restart flag is restarted, a running disabled one stopped,
and a stopped enabled one started. Ticks and toggles only *schedule* a pass; a pass
still running absorbs them into one more pass, so a slow command never piles up work.
Commands are subprocesses with timeouts whose whole process group is killed when they
hang, so a hung ``status`` delays only its own service, never the others or the apps.

Two things differ from the original, on purpose:

* **Start backoff.** A start that fails (or whose instance is gone at the very next
  ``status``, before any check saw it running) counts as a failure. The first failure
  is retried at the next tick, as the original did; after ``n`` failures in a row the
  next start waits ``tick * 2**(n-1)`` seconds, at most :data:`BACKOFF_MAX` (or one tick
  if that is longer). It never gives up: a system service often comes back once
  something outside Patrol is fixed, and a try every few minutes costs nothing. A
  ``status`` that finds it running, or a toggle, resets the count.
* **After a successful restart** the new instance is looked for at once (the original
  waited for the next tick).
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

import structlog

from patrol.util.backoff import capped_exponential
from patrol.plugin.model import ServiceConfig
from patrol.engine.spawn import CommandResult, run_command
from patrol.engine.health import Health
from patrol.engine.service_backends import BrokenBackend
from patrol.engine.runner_base import RunnerBase
from patrol.engine.start_gate import StartGate
from patrol.plugin.service import ServiceBackend
from patrol.engine.host import Host
from patrol.engine.item_state import DISABLE, HistoryRecord, State, new_instance_id
from patrol.plugin.states import ItemState

log = structlog.get_logger("patrol.services")

#: Longest wait between two start attempts of a failing service (seconds).
BACKOFF_MAX = 300.0
#: How much of a command's captured output goes into Patrol's log (characters, the end).
LOGGED_OUTPUT = 4000
#: What the API shows while a command other than ``status`` runs.
ACTION_PHASES = {"start": ItemState.STARTING, "stop": ItemState.STOPPING, "restart": ItemState.RESTARTING}


class ServiceRunner(RunnerBase):
    """Supervises one system service through its backends (one per action)."""

    group = "service"
    logger = log

    #: what an app has and a service never does (the read side shows both alike)
    last_exit = None
    fault_message = None
    ping_transport = None

    def __init__(self, sup: Host, config: ServiceConfig,
                 backends: Mapping[str, ServiceBackend | BrokenBackend]) -> None:
        self.sup = sup
        self.config = config
        self.id = config.id
        self.backends = dict(backends)
        self.state = State(history_limit=sup.config.history, disabled=config.disabled)
        with self.state.session() as s:
            s.replace_keyvalue(dict(config.keyvalue))
        self.last_reason = ""
        self.starts = 0
        self.failures = 0  # failed starts in a row (backoff)
        self.backoff_delay = 0.0
        self.action = ""  # the command running now, "" when idle
        self._confirmed = True  # a status check saw the current instance running
        self._status_reason = ""  # why the last status said "not running"
        self._not_before = 0.0  # monotonic time before which no start is tried
        self._retry: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._detached = False
        self._tick_due = False
        self.health = Health(self)  # readiness
        self.gate = StartGate(self)  # depends-on

    # -- scheduling ------------------------------------------------------------------

    def start(self) -> None:
        """Called once when the supervisor starts: look at the service at once."""
        self._schedule()

    def tick(self) -> None:
        self._tick_due = True
        self._schedule()

    def toggled(self) -> None:
        """A toggle changed the flags: act now, and forget a start backoff when enabled."""
        if not self.state.disabled:
            self._reset_backoff()
        self._schedule()
        self.sup.dependencies.changed(self)  # a dependent's reason may name this service's state

    def wake(self) -> None:  # a pass, which starts it if its conditions hold
        self._schedule()

    def detach(self) -> None:
        """A reload removed or replaced this runner: stop acting; the service keeps running."""
        self._detached = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._task is not None:
            self._task.cancel()

    def _schedule(self) -> None:
        if self.sup.shutting_down or self._detached:
            return
        if self._task is not None:
            self._again = True  # one more pass once the current one ends
            return
        tick, self._tick_due = self._tick_due, False
        self._task = self.sup.loop.create_task(self._reconcile(tick))
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            self.log.error("reconcile failed", error=repr(task.exception()))
        if self._again or self._tick_due:
            self._again = False
            self._schedule()

    # -- one pass --------------------------------------------------------------------

    async def _reconcile(self, tick: bool) -> None:
        st = self.state
        if await self.run("status"):
            self._seen_running()
        elif st.running:
            confirmed = self._confirmed
            self._close(f"not running ({self._status_reason})")
            if not confirmed:  # gone before any check saw it running: the start failed
                self._start_failed(self.last_reason)
        if tick:
            if st.running:
                self.emit("service.running")
            elif st.disabled:
                self.emit("service.disabled")
        if st.running:
            if st.restart:
                await self._restart()
            elif st.disabled:
                await self._stop()
            return
        if st.disabled or self.backing_off:
            self.gate.clear()
            return
        if self.gate.holds():  # depends-on
            return
        self.emit("service.start")
        if st.disabled:  # an observer may have disabled it
            return
        await self._start()

    async def _start(self) -> None:
        st = self.state
        with st.session() as s:  # both happen even if the start then fails (as the original)
            s.set(restart=False)
            if st.run_once:
                s.set(run_once_consumed=True)
        if await self.run("start"):
            self._new_instance(confirmed=False)
        else:
            self._start_failed(self.last_reason)
            self.emit("service.start_failed", error=self.last_reason)

    async def _stop(self) -> None:
        if await self.run("stop"):
            self._close("disabled")
        # on failure: logged by run(); the next tick tries again (as the original)

    async def _restart(self) -> None:
        with self.state.session() as s:  # cleared whatever happens (as the original)
            s.set(restart=False)
        if await self.run("restart"):
            self._close("restart", restart=True)
            self._again = True  # find the new instance now, not at the next tick

    async def shutdown(self) -> None:
        """Patrol is stopping: end any command in flight; stop the service if configured.

        Services keep running by default (as the original); ``stop-on-shutdown`` stops
        the ones Patrol saw running (or was acting on when the shutdown came).
        """
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        acting = self.action in ("start", "restart")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.config.stop_on_shutdown and (self.state.running or acting):
            if await self.run("stop"):
                self._close("shutdown")

    # -- commands --------------------------------------------------------------------

    async def run(self, action: str) -> bool:
        """Run an action's command; True on success (0 or an ignored exit code)."""
        backend = self.backends[action]
        try:
            argv = backend.command(action, self.config.parameters[action])
        except Exception as exc:  # noqa: BLE001 - a backend's bug fails this service only
            self.sup.plugins.failed_in(self.sup.plugins.services, backend.name)
            plugin = self.sup.plugins.origin(self.sup.plugins.services, backend.name)
            self.log.error("service backend failed", action=action, management=backend.name, plugin=plugin, exc_info=exc)
            return self._failed(action, f"{action}: backend {backend.name} (plugin {plugin}) could not "
                                f"build the command ({type(exc).__name__}: {exc})", {})
        timeout = self.config.status_timeout if action == "status" else self.config.command_timeout
        self.action = action
        try:
            result = await run_command(argv, self.sup.reaper, timeout=timeout)
        finally:
            self.action = ""
        fields: dict[str, Any] = dict(action=action, argv=argv, code=result.exit_code,
                                      output=result.output[-LOGGED_OUTPUT:].rstrip() or None)
        if _succeeded(result, self.config.ignore_exit_codes.get(action, frozenset())):
            (self.log.debug if action == "status" else self.log.info)("service command ok", **fields)
            return True
        reason = _describe(action, result, timeout)
        if action == "status" and result.exit_code is not None and not result.timed_out:
            # "not running" is an answer, not an error: it matters only if it was running
            self._status_reason = reason
            self.log.debug("service command failed", **fields)
            return False
        return self._failed(action, reason, fields)

    def _failed(self, action: str, reason: str, fields: dict[str, Any]) -> bool:
        """A command could not give an answer, or refused: say why everywhere."""
        if action == "status":
            self._status_reason = reason
        self.last_reason = reason
        self.log.warning("service command failed", reason=reason, **fields)
        return False

    # -- persistence (the supervisor's state file) -----------------------------------

    def restored(self, row: dict[str, Any]) -> None:
        """A restored instance needs nothing more: the next status check confirms it."""

    def persist_extra(self) -> dict[str, Any]:
        return {}

    # -- backoff ---------------------------------------------------------------------

    @property
    def backing_off(self) -> bool:
        return self.sup.now() < self._not_before

    def _start_failed(self, reason: str) -> None:
        """Count a failed start and decide when the next one may be tried."""
        self.failures += 1
        self.start_failures += 1
        tick = self.sup.config.tick_every
        delay = 0.0 if self.failures == 1 else capped_exponential(tick, 2, self.failures - 1, max(BACKOFF_MAX, tick))
        self.backoff_delay = delay
        self._not_before = self.sup.now() + delay
        if delay > 0:
            self.log.warning("start failed again, backing off", failures=self.failures, delay=delay,
                             reason=reason)
            if self._retry is not None:
                self._retry.cancel()
            self._retry = self.sup.loop.call_later(delay, self._retry_due)

    def _retry_due(self) -> None:
        self._retry = None
        self._schedule()

    def _reset_backoff(self) -> None:
        self.failures = 0
        self.backoff_delay = 0.0
        self._not_before = 0.0
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    # -- state -----------------------------------------------------------------------

    def _seen_running(self) -> None:
        if not self.state.running:  # found running: adopted, or back by itself
            self._new_instance(confirmed=True)
        else:
            with self.state.session() as s:
                s.set(lastseen=self.sup.wall())
        self._confirmed = True
        self._reset_backoff()

    def _new_instance(self, *, confirmed: bool) -> None:
        with self.state.session() as s:
            s.set(instance_id=new_instance_id(), started=self.sup.wall(), lastseen=None)
        self._confirmed = confirmed
        self.starts += 1
        self.gate.clear()
        self.log.info("running", instance=self.state.instance_id)
        self.emit("service.started")
        self.health.begin()
        self.sup.dependencies.changed(self)

    def _close(self, reason: str, *, restart: bool = False) -> None:
        st = self.state
        if not st.running:
            return
        record = HistoryRecord(
            instance_id=st.instance_id,
            started=st.started,
            stopped=self.sup.wall(),
            lastseen=st.lastseen,
            disabled=st.disabled,
            restart=restart or st.restart,
            run_once=st.run_once_consumed,
            shutdown=self.sup.shutting_down,
            reason=reason,
            keyvalue=dict(st.keyvalue),
        )
        with st.session() as s:
            s.append_history(record)
            s.set(instance_id="", started=None, lastseen=None)
            if st.run_once_consumed:
                s.toggle(DISABLE)
            if self.config.keyvalue_clear:
                s.replace_keyvalue({})
        self.last_reason = reason
        self.health.end()
        self.log.info("closed", reason=reason)
        self.emit("service.closed", record=record)
        self.sup.dependencies.changed(self)

    # -- reporting -------------------------------------------------------------------

    def current_phase(self) -> ItemState:
        if self.action in ACTION_PHASES:
            return ACTION_PHASES[self.action]
        if self.state.running:
            return self.health.phase()
        if self.state.disabled:
            return ItemState.DISABLED
        return ItemState.BACKOFF if self.backing_off else ItemState.WAITING if self.gate.waiting else ItemState.STOPPED


def _succeeded(result: CommandResult, ignored: frozenset[int]) -> bool:
    if result.status is None or result.timed_out or result.exit_code is None:
        return False
    return result.exit_code == 0 or result.exit_code in ignored


def _describe(action: str, result: CommandResult, timeout: float) -> str:
    if result.status is None:
        return f"{action}: cannot run {result.argv[0]}: {result.error}"
    if result.timed_out:
        return f"{action}: timed out after {timeout:g}s (its process group was killed)"
    return f"{action}: {result.status}"
