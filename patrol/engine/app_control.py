"""The keepalive's side of an app: what its plugin may see and do, and nothing else.

A keepalive method is handed an :class:`AppControl` (the
:class:`patrol.plugin.keepalive.AppControl` of the kernel), not the app's runner. Its
reports (the app is alive as this pid, it is dead, something is wrong) become runs of
the app here; its timers and pid watches belong to the current run and end with it.
Every call into the plugin, and every callback it handed over, is isolated: an
exception is logged with the plugin's name and traceback, the run's processes are
stopped, and the app takes its normal failure path (backoff, ``last-reason``).
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Callable

from patrol.engine import ownership
from patrol.engine.app_instance import Instance
from patrol.engine.app_owner import AppOwner
from patrol.engine.reaper import watch_pid
from patrol.plugin.keepalive import Cancellable, ExitStatus
from patrol.plugin.model import AppConfig, PatrolConfig


class AppControl:
    """What one app's keepalive may see and do (see the module docstring)."""

    #: one per app (thousands at once): no per-object __dict__
    __slots__ = ("runner", "instance")

    def __init__(self, runner: AppOwner, instance: Instance) -> None:
        self.runner = runner
        self.instance = instance

    @property
    def log(self) -> Any:
        return self.runner.log

    @property
    def config(self) -> AppConfig:
        return self.runner.config

    @property
    def patrol_config(self) -> PatrolConfig:
        return self.runner.sup.config  # live: a reload may change it

    @property
    def pid(self) -> int:
        return self.runner.state.pid

    @property
    def running(self) -> bool:
        return self.runner.state.running

    @property
    def launcher_pid(self) -> int:
        return self.instance.launcher_pid

    @property
    def disabled(self) -> bool:
        return self.runner.state.disabled

    def owns(self, pid: int) -> bool:
        return self.runner.owns(pid)

    def now(self) -> float:
        return self.runner.now()

    # -- timers and watches of the current run ---------------------------------------

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        handle = self.runner.sup.loop.call_later(delay, self.guarded, "a timer callback", callback)
        # forget cancelled timers: a keepalive re-arming one per period must not grow the list
        timers = [t for t in self.instance.timers or () if not (isinstance(t, asyncio.TimerHandle) and t.cancelled())]
        timers.append(handle)
        self.instance.timers = timers
        return handle

    def watch_pid(self, pid: int, callback: Callable[[], None]) -> Cancellable | None:
        watch = watch_pid(self.runner.sup.loop, pid, partial(self.guarded, "a watch_pid callback", callback))
        if watch is not None:
            self.instance.timers = [*(self.instance.timers or ()), watch]
        return watch

    # -- reports ---------------------------------------------------------------------

    def alive(self, pid: int, *, tentative: bool = False, trusted: bool = False, pinged: bool = False) -> None:
        # The process Patrol spawned last is Patrol's child: never Patrol, pid 1 or an
        # ancestor of Patrol, so it needs no protection check (a /proc read per start).
        runner = self.runner
        st, instance = runner.state, self.instance
        if pid and not pinged and pid != st.pid and pid != instance.launcher_pid and ownership.is_protected(pid):
            self.fault(f"pid {pid} is Patrol itself, pid 1 or an ancestor of Patrol: never adopted")
            return
        if st.running and pid and st.pid and pid != st.pid and not instance.tentative:
            runner.close("pid changed", None)
        if not st.running:
            runner.new_run(pid, tentative, "app.started_pinged" if pinged else "app.started")
            return
        with st.session() as s:
            if pid and pid != st.pid:  # the launcher's pid is replaced by the real one
                instance.tentative = tentative
                instance.track(pid)  # before the session: the state file records its start time
                s.set(pid=pid)
            elif pid and not tentative:
                instance.tentative = False  # the launcher confirmed it is the app itself
            s.set(lastseen=runner.sup.wall())
        if pinged:
            runner.emit("app.pinged")

    def fault(self, message: str | None) -> None:
        runner = self.runner
        if message == runner.fault_message:
            return
        if message is None:
            self.log.info("fault cleared", fault=runner.fault_message)
        else:
            self.log.warning("fault", fault=message)
        runner.fault_message = message

    def ready(self, ready: bool, message: str = "") -> None:
        if self.runner.state.running:
            self.runner.health.keepalive_ready(bool(ready), str(message)[:300])

    def status(self, text: str | None) -> None:
        self.runner.health.set_status(None if text is None else str(text)[:300])

    def fail(self, reason: str) -> None:
        self.runner.fail_run(str(reason)[:300])

    def dead(self, reason: str, status: ExitStatus | None = None) -> None:
        runner = self.runner
        st, instance = runner.state, self.instance
        if not (st.pid and st.pid in instance.exits):
            # collect exit statuses that are already there (the run's may be one); not when
            # the reaper reported it already: each look walks every child of Patrol (~0.9 ms
            # at 5,000), and whatever else exited is the reaper's next look anyway
            runner.sup.reaper.reap()
        if not st.running and not instance.launching:
            return  # already ended (by an exit reaped just above, or an earlier report)
        instance.launching = False
        if status is None and st.pid:
            status = instance.exits.get(st.pid)
        uptime = runner.now() - instance.started_mono if st.running else 0.0
        if instance.launch_error and not runner.stop_reason:  # the launcher could not start the program
            reason, instance.launch_error = instance.launch_error, ""
            self.log.error("start failed", error=reason)
            runner.emit("app.start_failed", error=reason)
        if runner.stop_reason:
            reason = runner.stop_reason
        if st.running:
            runner.close(reason, status)
        else:  # the launch failed before the app was ever seen running
            runner.forget_run()
            runner.start_failures += 1
            runner.last_exit, runner.last_reason = status, reason
            self.log.warning("did not come up", reason=reason, status=str(status) if status else None)
        runner.after_death(uptime)

    # -- calling the plugin, isolated ------------------------------------------------

    def call(self, method: str, *args: Any) -> Any:
        """Call a keepalive method; an exception becomes the app's failure, not Patrol's."""
        runner = self.runner
        if runner.plugin_error and runner.stop_task is not None and method in ("check", "pinged"):
            return None  # it failed already and is being stopped for it
        try:
            return getattr(runner.keepalive, method)(*args)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug fails this app only
            self._failed(f"{method}()", exc)
            return None

    def guarded(self, what: str, callback: Callable[[], None]) -> None:
        """Run a callback the keepalive handed to a timer or a pid watch, isolated."""
        try:
            callback()
        except Exception as exc:  # noqa: BLE001
            self._failed(what, exc)

    def _failed(self, where: str, exc: Exception) -> None:
        """The keepalive plugin raised: log it with its name, and fail the run.

        The run's processes are stopped (a method that cannot watch them cannot be
        trusted to see them die), it closes with the plugin's error as its reason, and
        the restart counts as a quick failure (backoff, ``start-limit``).
        """
        runner = self.runner
        reason = (f"keepalive {runner.config.keepalive!r} (plugin {runner.plugin}) failed in {where}: "
                  f"{type(exc).__name__}: {exc}")
        runner.sup.plugins.failed_in(runner.sup.plugins.keepalives, runner.config.keepalive)
        self.log.error("keepalive plugin failed", plugin=runner.plugin, keepalive=runner.config.keepalive,
                       where=where, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        if runner.plugin_error:
            return  # the run is failing already
        live = runner.state.running or self.instance.launching
        if not (live or where == "closed()"):
            runner.last_reason = reason  # nothing runs: nothing to stop
            return
        runner.plugin_error = reason
        if not live:
            return  # closed() of a run that is closing: after_death shows the reason
        runner.stop_reason = reason
        if runner.stop_task is None and not (runner.sup.shutting_down or runner.retired):
            runner.begin_stop(reason, runner.config.stop_signal)
