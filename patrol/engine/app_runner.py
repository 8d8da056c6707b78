"""One app's supervision policy: when to start it, restart it, back off, give up, stop.

The runner is event-driven: a keepalive method reports the app alive or dead (through
the :class:`patrol.plugin.keepalive.AppControl` methods implemented here) and the
runner reacts at once: a dead app is restarted immediately, or after a backoff when it
keeps crashing. The supervisor's tick only reconciles (``check`` and the
``running``/``disabled`` events). What one run of the app consists of (its processes,
pids, groups, exits) is an :class:`~patrol.engine.app_instance.Instance`; how it is
stopped, a :class:`~patrol.engine.app_stop.Stopper`.

Ownership: the runner signals, reaps and stops only processes
:mod:`patrol.engine.ownership` proves to be this app's. A pid that only a ping or a pid
file named is recorded (shown, its exit ends the run where the method watches it) but
never signalled.

Every call into the keepalive plugin is isolated: an exception is logged with the
plugin's name and traceback, and becomes the app's normal failure path.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from patrol.engine.app_control import AppControl
from patrol.engine.app_instance import Instance
from patrol.engine.app_restarts import Restarts
from patrol.engine.app_stop import Stopper
from patrol.engine.health import Health
from patrol.engine.runner_base import RunnerBase
from patrol.engine.start_gate import StartGate
from patrol.engine.host import Host
from patrol.engine.item_state import DISABLE, State, new_instance_id
from patrol.plugin.keepalive import ExitStatus, KeepAlive
from patrol.plugin.model import AppConfig
from patrol.plugin.states import ItemState

log = structlog.get_logger("patrol.apps")


class _AfterSpawn:
    """What follows a spawn (``runner._spawned(pid)``), queued for the end of a start
    burst: one small object, not a ``partial`` with its tuple and dict (~220 bytes per
    app, all alive until the burst ends)."""

    __slots__ = ("runner", "pid")

    def __init__(self, runner: "AppRunner", pid: int) -> None:
        self.runner, self.pid = runner, pid

    def __call__(self) -> None:
        self.runner._spawned(self.pid)


class AppRunner(RunnerBase):
    """Supervises one app; implements :class:`patrol.plugin.keepalive.AppControl`."""

    group = "app"
    logger = log
    #: one per app (thousands at once): no per-object __dict__ (~70 bytes less each)
    __slots__ = ("sup", "config", "id", "key", "state", "instance", "stopper", "control", "keepalive", "ping_transport",
                 "health", "gate", "completion", "retired", "fault_message", "known", "restarts_after", "starts",
                 "start_failures", "last_exit", "last_reason", "plugin_error", "stop_task", "stop_reason",
                 "_restarting")

    def __init__(self, sup: Host, config: AppConfig, keepalive: type[KeepAlive]) -> None:
        self.sup = sup
        self.config = config
        self.id = config.id
        self.key = f"app/{config.id}"  # the owner name of its processes (PATROL_ID=<id>)
        self.state = State(history_limit=sup.config.history, disabled=config.disabled)
        with self.state.session() as s:
            s.replace_keyvalue(dict(config.keyvalue))
        self.instance = Instance(self)
        self.stopper = Stopper(self, self.instance)
        self.control = AppControl(self, self.instance)  # what the keepalive is handed
        self.keepalive = keepalive(self.control)
        #: the transport whose pings keep the app alive (None: not ping-based), the
        #: keepalive's for good (an attribute: /status/ reads it for every item)
        self.ping_transport: str | None = self.keepalive.ping_transport
        # (the class's functions, called with this runner: no bound method kept per app)
        self.health = Health(self, fail=type(self).fail_run, notified=keepalive.reports_readiness, run=self.instance)
        self.gate = StartGate(self, grace=type(self)._grace)  # the startup grace, then depends-on
        self.completion: ExitStatus | None = None  # how the last run ended while this Patrol ran
        self.retired = False  # stopped for good (shutdown, or replaced by a reload)
        self.fault_message: str | None = None  # a problem that does not end the run
        self.known = False  # the state file had this app
        self.restarts_after = Restarts(self)  # restart at once, back off, give up, or stay exited
        self.starts = 0
        self.start_failures = 0  # (a slot: the class's default of 0 is not seen)
        self.last_exit: ExitStatus | None = None
        self.last_reason = ""
        self.plugin_error = ""  # the keepalive plugin failed for the current run
        self.stop_task: asyncio.Task[None] | None = None
        self.stop_reason = ""
        self._restarting = False

    @property
    def plugin(self) -> str:
        """Which plugin (and distribution) the keepalive comes from, for messages: made
        when one is written (a string kept per app was ~90 bytes, for rare messages)."""
        return self.sup.plugins.origin(self.sup.plugins.keepalives, self.config.keepalive)

    def owns(self, pid: int) -> bool:
        """Is ``pid`` proven to be this app's (:mod:`patrol.engine.ownership`)?

        The process Patrol spawned last for the app, while it is recorded with the start
        time of that spawn, is not reaped yet (reaping drops the record), so its pid cannot
        name another process: proven without reading ``/proc`` (a stop asked twice per app,
        two reads of ~40 us each, 500 apps at a shutdown)."""
        instance = self.instance
        if pid == instance.launcher_pid and instance.launch_start is not None \
                and self.sup.owners.recorded(pid) == (instance.launch_start, self.key):
            return True
        return self.sup.owners.belongs(self.key, pid)

    def now(self) -> float:
        return self.sup.now()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Called once when the supervisor starts: adopt what runs, start what should."""
        if self.state.running:  # a run restored from the state file
            if self.instance.adopt():
                self.starts += 1
                self.log.info("adopted", pid=self.state.pid, instance=self.state.instance_id)
                self.instance.reattach_logs()
                self.health.begin()
            else:
                self.close("gone while Patrol was down", None)
        self.control.call("adopt")
        self.reconcile()

    def pinged(self, pid: int) -> None:
        """A ping for this app arrived (the API checked transport and secret)."""
        self.control.call("pinged", pid)

    def restored(self, row: dict[str, Any]) -> None:
        """The state file had this app: no startup grace, it says whether a run was live."""
        self.instance.restore(row)
        self.known = True

    def persist_extra(self) -> dict[str, Any]:
        """What the state file needs beyond :class:`State` to adopt the run later."""
        return self.instance.persist()

    def tick(self) -> None:
        self.control.call("check")
        if self.state.running:
            self.emit("app.running")
        elif self.state.disabled:
            self.emit("app.disabled")
        self.reconcile()

    def reconcile(self) -> None:
        """Bring the app towards what its flags ask for. Idempotent; cheap."""
        if self.sup.shutting_down or self.retired:
            return
        st = self.state
        if st.running or self.instance.launching:
            if self.stop_task is None:
                if st.restart:
                    self.begin_stop("restart", self.config.restart_signal)
                elif st.disabled:
                    if self.stopper.stoppable():
                        self.begin_stop("disabled", self.config.stop_signal)
                    else:
                        self.control.fault(
                            f"disabled, but pid {st.pid} is not proven to be this app's (not started by Patrol, "
                            f"no PATROL_ID={self.id} in its environment), so it is not signalled; the instance "
                            "ends when the process or its pings do")
            return
        if st.disabled or self.restarts_after.holding or self.stop_task is not None:
            self.gate.clear()
            return
        if not self.gate.holds():  # the startup grace, then depends-on
            self.spawn()

    def toggled(self) -> None:
        """A toggle changed the flags (API or GUI): act on it now, not at the next tick."""
        if not self.state.disabled:
            self.restarts_after.release()
        self.sup.loop.call_soon(self.reconcile)
        self.sup.dependencies.changed(self)  # a dependent's reason may name this app's state

    def wake(self) -> None:
        self.sup.loop.call_soon(self.reconcile)

    def _grace(self) -> float:
        return 0.0 if self.known else float(self.control.call("startup_grace") or 0.0)

    def strays(self, found: dict[int, int]) -> None:
        """The tick found these processes of the app re-parented to Patrol (see Stopper)."""
        self.stopper.strays(found)

    # -- spawning --------------------------------------------------------------------

    def spawn(self) -> None:
        self.emit("app.start")
        if self.state.disabled:  # an observer may have disabled it
            return
        with self.state.session() as s:
            s.set(restart=False)
            if self.state.run_once:
                s.set(run_once_consumed=True)
        pid = self.instance.spawn(time.time_ns())
        if isinstance(pid, str):
            return self._start_failed(pid)
        self.sup.spawns.after(self.id, _AfterSpawn(self, pid))

    def _spawned(self, pid: int) -> None:
        self.instance.spawned(pid)
        self.stop_reason = ""
        self.plugin_error = ""
        with self.state.session() as s:
            s.set(started_log=self.instance.logs.files if self.instance.logs is not None else None)
        self.log.info("spawned", pid=pid, program=self.config.program)
        self.control.call("spawned", pid)
        if self.config.execute_timeout > 0 and (self.state.running or self.instance.launching):
            self.control.call_later(self.config.execute_timeout, self.stopper.execute_timeout)

    def _start_failed(self, error: str) -> None:
        self.instance.launching = False
        self.start_failures += 1
        self.last_reason = error
        self.log.error("start failed", error=error)
        self.emit("app.start_failed", error=error)
        self.after_death(0.0, start_failed=True)

    def new_run(self, pid: int, tentative: bool, event: str) -> None:
        self.instance.begin(pid, tentative)  # before the session: the state file records the pid's start time
        self.last_reason = ""  # the reason of the previous run's end is history now
        self.control.fault(None)  # so is a problem seen while nothing ran
        with self.state.session() as s:
            s.set(instance_id=new_instance_id(), started=self.sup.wall(), pid=pid, lastseen=None, exit_code=0)
        self.starts += 1
        self.gate.clear()
        self.log.info("running", pid=pid or None, instance=self.state.instance_id)
        self.emit(event)
        self.health.begin()
        self.sup.dependencies.changed(self)

    # -- closing, restarting, stopping -----------------------------------------------

    def close(self, reason: str, status: ExitStatus | None) -> None:
        st = self.state
        record = self.instance.record(reason, status, restart=st.restart or self._restarting)
        with st.session() as s:
            s.append_history(record)
            s.set(instance_id="", started=None, lastseen=None, pid=0, exit_code=0)
            if st.run_once_consumed:
                s.toggle(DISABLE)
            if self.config.keyvalue_clear:
                s.replace_keyvalue({})
        self.forget_run()
        self.last_exit, self.last_reason = status, reason
        self.completion = status or ExitStatus()  # no status: it ended, nobody knows how
        self.log.info("closed", reason=reason, status=str(status) if status else None)
        self.emit("app.closed", record=record)
        self.sup.dependencies.changed(self)

    def forget_run(self) -> None:
        self.instance.forget()
        self.health.end()
        self.fault_message = None
        self.control.call("closed")

    def after_death(self, uptime: float, start_failed: bool = False) -> None:
        self.stopper.cleanup_groups()
        restarting, self._restarting = self._restarting, False
        self.stop_reason = ""
        if self.plugin_error:  # the keepalive plugin failed: a quick failure, whatever the uptime
            self.last_reason, self.plugin_error = self.plugin_error, ""
            uptime = 0.0
        if self.sup.shutting_down or self.retired or self.state.disabled:
            return
        if not restarting and self.sup.ended(self, start_failed):  # the main app of Patrol (exit-with): Patrol ends
            return
        self.restarts_after.after_death(uptime, restarting)
        if self.restarts_after.given_up or self.restarts_after.exited:
            self.sup.dependencies.changed(self)  # a dependent's reason may name this end

    def fail_run(self, reason: str) -> None:
        """End the run as a failure (liveness, ``fail``): stopped, then restarted as after a crash."""
        if self.stop_task is None and (self.state.running or self.instance.launching):
            self.log.warning("failing the run", reason=reason)
            self.begin_stop(reason, self.config.stop_signal)

    def begin_stop(self, reason: str, sig: int) -> None:
        if reason == "restart":
            with self.state.session() as s:
                s.set(restart=False)  # as the original: cleared when the signal is sent
            self._restarting = True
        self.stop_reason = reason
        self.stop_task = self.sup.loop.create_task(self.stopper.terminate(sig))
        self.stop_task.add_done_callback(self._stop_done)

    def _stop_done(self, task: asyncio.Task[None]) -> None:
        self.stop_task = None
        if not task.cancelled() and task.exception() is not None:
            self.log.error("stop failed", error=repr(task.exception()))
        self.reconcile()

    async def stop(self, reason: str = "stopped") -> None:
        """Stop the app for good and wait until none of its processes is left.

        For shutdown and for a reload that removes or replaces this runner: the runner
        is retired and never starts the app again. Processes of the app that left its
        session and were re-parented to Patrol are stopped too.
        """
        self.retired = True
        self.restarts_after.cancel()
        self.gate.cancel()
        if self.stop_task is None and self.state.running and not self.stopper.stoppable():
            # Only a ping named this pid: nothing Patrol may signal, so nothing to wait for.
            self.close(reason, None)
        if self.stop_task is None and (self.state.running or self.instance.launching or self.stopper.groups_alive()):
            self.stop_reason = reason
            self.stop_task = self.sup.loop.create_task(self.stopper.terminate(self.config.stop_signal))
            self.stop_task.add_done_callback(self._stop_done)
        if self.stop_task is not None:
            await asyncio.shield(self.stop_task)
        await self.stopper.drain()
        await self.stopper.stop_escaped(self.now() + self.config.stop_timeout)

    # -- reporting -------------------------------------------------------------------

    def status_inputs(self) -> tuple[Any, ...]:  # (the backoff read without its property)
        return (self.group, self.config, self.current_phase(), self.starts, self.restarts_after.delay,
                self.last_exit, self.last_reason, self.fault_message, self.ping_transport)

    def current_phase(self) -> ItemState:
        if self.state.started is not None:  # running (read directly: /status/ asks per item)
            return ItemState.STOPPING if self.stop_task is not None else self.health.phase()
        if self.instance.launching:
            return ItemState.STARTING
        if self.state.disabled:
            return ItemState.DISABLED
        if self.restarts_after.given_up:
            return ItemState.GIVEN_UP
        if self.restarts_after.exited:
            return ItemState.EXITED
        if self.restarts_after.retry is not None:
            return ItemState.BACKOFF
        if self.gate.waiting:
            return ItemState.WAITING  # the startup grace, or its dependencies
        return ItemState.STOPPED

    @property
    def backoff_delay(self) -> float:  # type: ignore[override]  # (a service's is its attribute)
        return self.restarts_after.delay
