"""One app's supervision: spawn, watch, stop, restart, back off, record history.

The runner is event-driven: a keepalive method reports the app alive or dead (through
the :class:`patrol.keepalive.AppControl` methods implemented here) and the runner reacts
at once: a dead app is restarted immediately, or after a backoff when it keeps crashing.
The supervisor's tick only reconciles (``check`` and the ``running``/``disabled`` events).

Ownership: the runner signals, reaps and stops only processes :mod:`patrol.ownership`
proves to be this app's. A pid that only a ping or a pid file named is recorded (shown,
its exit ends the instance where the method watches it) but never signalled. Processes
that left the app's session and were re-parented to Patrol are found by their
``PATROL_ID`` marker and stopped with the instance (and at shutdown).

Every call into the keepalive plugin is isolated: an exception is logged with the
plugin's name and traceback, and becomes the app's normal failure path.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

import structlog

from patrol.engine import ownership
from patrol.util.backoff import capped_exponential
from patrol.plugin.model import AppConfig, PatrolConfig
from patrol.plugin.keepalive import Cancellable, ExitStatus, KeepAlive
from patrol.engine.logpipes import InstanceLogs
from patrol.engine.process import (
    group_alive,
    live_groups,
    pid_alive,
    signal_group,
    signal_pid,
    spawn,
    watch_pid,
)
from patrol.engine.item_state import DISABLE, HistoryRecord, State, new_instance_id

if TYPE_CHECKING:
    from patrol.engine.supervisor import Supervisor

log = structlog.get_logger("patrol.apps")

#: The environment a child gets when ``env-parent`` is false. The original gave it
#: nothing at all (no PATH: spec 10.21); this is what systemd gives a service.
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
PASSED_ENV = ("LANG", "LC_ALL", "TZ", "HOME", "USER", "LOGNAME")


class AppRunner:
    """Supervises one app; implements :class:`patrol.keepalive.AppControl`."""

    group = "app"

    def __init__(self, sup: "Supervisor", config: AppConfig, keepalive: type[KeepAlive]) -> None:
        self.sup = sup
        self.config = config
        self.id = config.id
        self.key = f"app/{config.id}"  # the owner name of its processes (PATROL_ID=<id>)
        self.plugin = sup.plugins.origin(sup.plugins.keepalives, config.keepalive)
        self.state = State(history_limit=sup.config.history, disabled=config.disabled)
        with self.state.session() as s:
            s.replace_keyvalue(dict(config.keyvalue))
        self.keepalive = keepalive(self)
        self.log = log.bind(app=self.id)
        self.launcher_pid = 0
        self.launching = False
        self.retired = False  # stopped for good (shutdown, or replaced by a reload)
        self.fault_message: str | None = None  # a problem that does not end the instance
        self._logs: InstanceLogs | None = None  # the pipes and files of the last spawn
        self._log_pipes: dict[str, int] = {}  # stream -> pipe inode, to read it again after a restart
        self._leftovers: set[asyncio.Task[None]] = set()  # stopping what an instance left behind
        self._known = False  # the state file had this app
        self.given_up = False
        self.starts = 0
        self.failures = 0  # consecutive quick failures (backoff)
        self.backoff_delay = 0.0
        self.last_exit: ExitStatus | None = None
        self.last_reason = ""
        self._tentative = False
        self._proven = False  # the instance pid is proven to be this app's (may be signalled)
        self._started_mono = 0.0
        self._exits: dict[int, ExitStatus] = {}
        #: process groups of the instance that Patrol may signal -> their leader's start
        #: time (None: the leader was gone when the group was recorded)
        self._groups: dict[int, int | None] = {}
        self._launch_start: int | None = None  # start time of the last launcher
        self._stopping: set[int] = set()  # escaped processes being stopped now
        self._plugin_error = ""  # the keepalive plugin failed for the current instance
        self._timers: list[Cancellable] = []  # owned by the current instance
        self._retry: asyncio.TimerHandle | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._stop_reason = ""
        self._restarting = False
        self._pid_start: int | None = None  # the instance pid's start time (pid reuse guard)
        self._restored_trust = True
        self._restored_leaders: dict[int, int | None] = {}

    # -- AppControl ------------------------------------------------------------------

    @property
    def patrol_config(self) -> PatrolConfig:
        return self.sup.config  # live: a reload may change it

    @property
    def pid(self) -> int:
        return self.state.pid

    @property
    def running(self) -> bool:
        return self.state.running

    @property
    def disabled(self) -> bool:
        return self.state.disabled

    def owns(self, pid: int) -> bool:
        return self.sup.owners.belongs(self.key, pid)

    def now(self) -> float:
        return self.sup.now()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        handle = self.sup.loop.call_later(delay, self._guarded, "a timer callback", callback)
        # forget cancelled timers: a keepalive re-arming one per period must not grow this list
        self._timers = [t for t in self._timers if not (isinstance(t, asyncio.TimerHandle) and t.cancelled())]
        self._timers.append(handle)
        return handle

    def watch_pid(self, pid: int, callback: Callable[[], None]) -> Cancellable | None:
        watch = watch_pid(self.sup.loop, pid, partial(self._guarded, "a watch_pid callback", callback))
        if watch is not None:
            self._timers.append(watch)
        return watch

    def alive(self, pid: int, *, tentative: bool = False, trusted: bool = False, pinged: bool = False) -> None:
        st = self.state
        if pid and not pinged and pid != st.pid and ownership.is_protected(pid):
            self.fault(f"pid {pid} is Patrol itself, pid 1 or an ancestor of Patrol: never adopted")
            return
        if st.running and pid and st.pid and pid != st.pid and not self._tentative:
            self._close("pid changed", None)
        if not st.running:
            self._new_instance(pid, tentative, "app.started_pinged" if pinged else "app.started")
            return
        with st.session() as s:
            if pid and pid != st.pid:  # the launcher's pid is replaced by the real one
                self._tentative = tentative
                self._track(pid)  # before the session: the state file records its start time
                s.set(pid=pid)
            elif pid and not tentative:
                self._tentative = False  # the launcher confirmed it is the app itself
            s.set(lastseen=self.sup.wall())
        if pinged:
            self.emit("app.pinged")

    def fault(self, message: str | None) -> None:
        if message == self.fault_message:
            return
        if message is None:
            self.log.info("fault cleared", fault=self.fault_message)
        else:
            self.log.warning("fault", fault=message)
        self.fault_message = message

    def dead(self, reason: str, status: ExitStatus | None = None) -> None:
        self.sup.reaper.reap()  # collect exit statuses that are already there
        if not self.state.running and not self.launching:
            return  # already ended (by an exit reaped just above, or an earlier report)
        self.launching = False
        st = self.state
        if status is None and st.pid:
            status = self._exits.get(st.pid)
        uptime = self.now() - self._started_mono if st.running else 0.0
        if self._stop_reason:
            reason = self._stop_reason
        if st.running:
            self._close(reason, status)
        else:  # the launch failed before the app was ever seen running
            self._forget_instance()
            self.last_exit, self.last_reason = status, reason
            self.log.warning("did not come up", reason=reason, status=str(status) if status else None)
        self._after_death(uptime)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Called once when the supervisor starts: adopt what runs, start what should."""
        if self.state.running:  # an instance restored from the state file
            self._adopt_restored()
        self._call("adopt")
        self.reconcile()

    def pinged(self, pid: int) -> None:
        """A ping for this app arrived (the API checked transport and secret)."""
        self._call("pinged", pid)

    # -- calling the keepalive plugin ------------------------------------------------

    def _call(self, method: str, *args: Any) -> Any:
        """Call a keepalive method; an exception becomes the app's failure, not Patrol's."""
        if self._plugin_error and self._stop_task is not None and method in ("check", "pinged"):
            return None  # it failed already and is being stopped for it
        try:
            return getattr(self.keepalive, method)(*args)
        except Exception as exc:  # noqa: BLE001 - a plugin's bug fails this app only
            self._plugin_failed(f"{method}()", exc)
            return None

    def _guarded(self, what: str, callback: Callable[[], None]) -> None:
        """Run a callback the keepalive handed to a timer or a pid watch, isolated."""
        try:
            callback()
        except Exception as exc:  # noqa: BLE001
            self._plugin_failed(what, exc)

    def _plugin_failed(self, where: str, exc: Exception) -> None:
        """The keepalive plugin raised: log it with its name, and fail the instance.

        The instance's processes are stopped (a method that cannot watch them cannot be
        trusted to see them die), it closes with the plugin's error as its reason, and
        the restart counts as a quick failure (backoff, ``start-limit``).
        """
        reason = (f"keepalive {self.config.keepalive!r} (plugin {self.plugin}) failed in {where}: "
                  f"{type(exc).__name__}: {exc}")
        self.log.error("keepalive plugin failed", plugin=self.plugin, keepalive=self.config.keepalive,
                       where=where, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        if self._plugin_error:
            return  # the instance is failing already
        if not (self.state.running or self.launching or where == "closed()"):
            self.last_reason = reason  # nothing runs: nothing to stop
            return
        self._plugin_error = reason
        if not (self.state.running or self.launching):
            return  # closed() of an instance that is closing: _after_death shows the reason
        self._stop_reason = reason
        if self._stop_task is None and not (self.sup.shutting_down or self.retired):
            self._begin_stop(reason, self.config.stop_signal)

    # -- persistence -----------------------------------------------------------------

    def restored(self, row: dict[str, Any]) -> None:
        """The state file had this app: remember what identifies its live instance."""
        self._pid_start = row.get("pid-start")
        self._restored_trust = bool(row.get("trusted", True))  # a pid only a ping named stays unproven
        leaders = row.get("group-leaders") or {}
        self._restored_leaders = {}
        for g in row.get("groups", ()):
            leader = leaders.get(str(g)) if isinstance(leaders, dict) else None
            self._restored_leaders[int(g)] = int(leader) if isinstance(leader, int) else None
        self._known = True  # no startup grace: the state file says whether it was running
        pipes = row.get("log-pipes")
        self._log_pipes = {k: v for k, v in pipes.items() if isinstance(v, int)} if isinstance(pipes, dict) else {}

    def persist_extra(self) -> dict[str, Any]:
        """What the state file needs beyond :class:`State` to adopt the instance later."""
        return {"pid-start": self._pid_start, "groups": sorted(self._groups), "trusted": self._proven,
                "group-leaders": {str(g): s for g, s in sorted(self._groups.items())},
                "log-pipes": self._log_pipes}

    def _adopt_restored(self) -> None:
        """Adopt the instance that ran when Patrol stopped, if it is the very same process.

        Same pid *and* same process start time (a pid alone may have been reused).
        Otherwise the instance ended while Patrol was away: close it into history.
        """
        pid = self.state.pid
        info = ownership.stat(pid) if pid else None
        if info is not None and info.alive and self._pid_start is not None and info.start == self._pid_start:
            if self._restored_trust:  # it was proven before Patrol stopped: still the same process
                self.sup.owners.restored(self.key, pid, info.start)
            self._proven = self.owns(pid)
            self._started_mono = self.now() - max(0.0, self.sup.wall() - (self.state.started or 0))
            self._groups = {g: s for g, s in self._restored_leaders.items()
                            if ownership.group_is_still(g, s) and group_alive(g)}
            for g, s in self._groups.items():
                self.sup.owners.session(self.key, g, s)
            self.starts += 1
            self.log.info("adopted", pid=pid, instance=self.state.instance_id)
            self._logs = self.sup.logs.reattach(self.config, self.state.started_log, self._log_pipes, pid)
        else:
            self._groups = {}
            self._close("gone while Patrol was down", None)

    def tick(self) -> None:
        self._call("check")
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
        if st.running or self.launching:
            if self._stop_task is None:
                if st.restart:
                    self._begin_stop("restart", self.config.restart_signal)
                elif st.disabled:
                    if self._stoppable():
                        self._begin_stop("disabled", self.config.stop_signal)
                    else:
                        self.fault(f"disabled, but pid {st.pid} is not proven to be this app's (not started "
                                   f"by Patrol, no PATROL_ID={self.id} in its environment), so it is not "
                                   "signalled; the instance ends when the process or its pings do")
            return
        if st.disabled or self.given_up or self._retry is not None or self._stop_task is not None:
            return
        grace = 0.0 if self._known else float(self._call("startup_grace") or 0.0)
        grace_left = self.sup.started_mono + grace - self.now()
        if grace_left > 0:
            if self._grace is None:
                self._grace = self.sup.loop.call_later(grace_left, self._grace_over)
                self.last_reason = self._waiting_reason(grace_left)
            return
        self.spawn()

    def _waiting_reason(self, seconds: float) -> str:
        """Why an app that is not running is not started yet (state ``waiting``)."""
        up_to = f"up to {math.ceil(seconds)} s"
        if self.keepalive.ping_transport is not None:
            return f"waiting for the first ping ({up_to})"
        return f"waiting for a running instance to be adopted ({up_to})"

    def _grace_over(self) -> None:
        self._grace = None
        if self.last_reason.startswith("waiting for "):
            self.last_reason = ""
        self.reconcile()

    def toggled(self) -> None:
        """A toggle changed the flags (API or GUI): act on it now, not at the next tick."""
        if not self.state.disabled and (self.given_up or self._retry is not None):
            self.given_up = False
            self.failures = 0
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
        self.sup.loop.call_soon(self.reconcile)

    # -- spawning --------------------------------------------------------------------

    def spawn(self) -> None:
        self.emit("app.start")
        if self.state.disabled:  # an observer may have disabled it
            return
        with self.state.session() as s:
            s.set(restart=False)
            if self.state.run_once:
                s.set(run_once_consumed=True)
        now_ns = time.time_ns()
        try:  # the app writes into pipes; Patrol writes (and rotates) the files
            logs = self.sup.logs.open_instance(self.config, now_ns)
        except OSError as exc:
            return self._start_failed(f"cannot open log files in {self.config.log_root}: {exc.strerror or exc}")
        try:
            proc = spawn(
                self.argv(),
                env=self.environment(),
                cwd=self.config.working_directory,
                stdout=logs.child_stdout,
                stderr=logs.child_stderr,
            )
        except OSError as exc:
            logs.abort()
            return self._start_failed(f"cannot execute {self.config.program}: {exc.strerror or exc}")
        finally:
            logs.close_child_ends()
        logs.start()
        self._logs, self._log_pipes = logs, logs.pipes
        self.launcher_pid = proc.pid
        self.launching = True
        self._stop_reason = ""
        self._plugin_error = ""
        self._launch_start = self.sup.owners.spawned(self.key, proc.pid)  # proof: Patrol spawned it
        self._groups = {proc.pid: self._launch_start}  # its own session and group
        self._exits = {}
        self.sup.reaper.watch(proc.pid, partial(self._on_exit, proc.pid, proc), owner=self.key)
        with self.state.session() as s:
            s.set(started_log=logs.files)
        self.log.info("spawned", pid=proc.pid, program=self.config.program)
        self._call("spawned", proc.pid)
        if self.config.execute_timeout > 0 and (self.state.running or self.launching):
            self.call_later(self.config.execute_timeout, self._execute_timeout)

    def argv(self) -> list[str]:
        return [self.config.program, *self.config.args]

    def environment(self) -> dict[str, str]:
        """The child's environment, in the original's order (later entries win)."""
        cfg, pcfg = self.config, self.patrol_config
        if cfg.env_parent:
            env = dict(os.environ)
        else:
            env = dict(BASE_ENV)
            env.update({k: os.environ[k] for k in PASSED_ENV if k in os.environ})
        for entry in cfg.env:
            key, _, value = entry.partition("=")
            env[key] = value
        env["PATROL_ID"] = self.id
        env["PATROL_KEEPALIVE"] = str(self._keepalive_number())
        if cfg.pid_path:
            env["PATROL_PID"] = cfg.pid_file
        if pcfg.listen_http:
            env["PATROL_HTTP"] = json.dumps(list(pcfg.listen_http), separators=(",", ":"))
        if pcfg.listen_udp:
            env["PATROL_UDP"] = json.dumps(list(pcfg.listen_udp), separators=(",", ":"))
        return env

    def _keepalive_number(self) -> int | str:
        numbers = [a for a in self.keepalive.aliases if isinstance(a, int)]
        return numbers[0] if numbers else self.keepalive.name

    def _start_failed(self, error: str) -> None:
        self.launching = False
        self.last_reason = error
        self.log.error("start failed", error=error)
        self.emit("app.start_failed", error=error)
        self._after_death(0.0)

    def _on_exit(self, pid: int, proc: Any, status: ExitStatus) -> None:
        if proc is not None:
            proc.returncode = status.code if status.code is not None else -(status.signal or 0)
        self._exits[pid] = status
        try:
            self._call("child_exited", pid, status)
        finally:
            if pid == self.launcher_pid:
                self.launcher_pid = 0

    def _track(self, pid: int) -> None:
        """A new instance pid: if it is proven this app's, watch its exit and its group.

        A pid that is not proven (only a ping or a pid file named it) is only recorded:
        its exit status stays with whoever watches it, and its group is not added.
        """
        info = ownership.stat(pid)
        self._pid_start = info.start if info is not None else None
        self._proven = info is not None and self.owns(pid)
        if not self._proven or info is None:
            return
        if pid not in self._exits and pid != self.launcher_pid:
            self.sup.reaper.watch(pid, partial(self._on_exit, pid, None), owner=self.key)
        pgid = info.pgid
        if pgid and pgid not in self._groups and self._group_is_ours(pid, info):
            leader = ownership.stat(pgid)
            self._groups[pgid] = leader.start if leader is not None else None

    def _group_is_ours(self, pid: int, info: ownership.Proc) -> bool:
        """May the process group of ``pid`` (proven this app's) be signalled as a whole?

        Yes if ``pid`` leads it, if its leader is this app's too, or if ``pid`` was
        re-parented to Patrol (then its group was made by a descendant of Patrol: a
        double-forked daemon's). Not if it holds Patrol or its ancestors, nor a group
        someone else made (an app started by hand in a shell's job).
        """
        pgid = info.pgid
        if ownership.is_protected_group(pgid):
            return False
        if pgid == pid or info.ppid == os.getpid():
            return True
        leader = ownership.stat(pgid)
        return leader is not None and self.owns(pgid)

    def _new_instance(self, pid: int, tentative: bool, event: str) -> None:
        self.launching = False
        self._tentative = tentative
        self._proven = False
        self._started_mono = self.now()
        self.last_reason = ""  # the reason of the previous instance's end is history now
        self.fault(None)  # so is a problem seen while nothing ran
        if pid:
            self._track(pid)  # before the session: the state file records its start time
        with self.state.session() as s:
            s.set(instance_id=new_instance_id(), started=self.sup.wall(), pid=pid, lastseen=None, exit_code=0)
        self.starts += 1
        self.log.info("running", pid=pid or None, instance=self.state.instance_id)
        self.emit(event)

    # -- closing and restarting ------------------------------------------------------

    def _close(self, reason: str, status: ExitStatus | None) -> None:
        st = self.state
        wall = self.sup.wall()
        lastseen = st.lastseen
        if lastseen is None and self.keepalive.ping_transport is None:
            lastseen = wall  # the original reports "now" for a never-refreshed instance
        record = HistoryRecord(
            instance_id=st.instance_id,
            started=st.started,
            stopped=wall,
            lastseen=lastseen,
            pid=st.pid,
            disabled=st.disabled,
            restart=st.restart or self._restarting,
            run_once=st.run_once_consumed,
            shutdown=self.sup.shutting_down,
            exit_code=status.compat_code if status else 0,
            exit_signal=status.signal if status else None,
            reason="" if reason == "exited" else reason,  # the app's own exit needs no reason
            keyvalue=dict(st.keyvalue),
            log=st.started_log.stdout if st.started_log else "",
        )
        with st.session() as s:
            s.append_history(record)
            s.set(instance_id="", started=None, lastseen=None, pid=0, exit_code=0)
            if st.run_once_consumed:
                s.toggle(DISABLE)
            if self.config.keyvalue_clear:
                s.replace_keyvalue({})
        self._forget_instance()
        self.last_exit, self.last_reason = status, reason
        self.log.info("closed", reason=reason, status=str(status) if status else None)
        self.emit("app.closed", record=record)

    def _forget_instance(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._tentative = self._proven = False
        self.fault_message = None
        self._call("closed")

    def _after_death(self, uptime: float) -> None:
        self._cleanup_groups()
        restarting, self._restarting = self._restarting, False
        self._stop_reason = ""
        if self._plugin_error:  # the keepalive plugin failed: a quick failure, whatever the uptime
            self.last_reason, self._plugin_error = self._plugin_error, ""
            uptime = 0.0
        if self.sup.shutting_down or self.retired or self.state.disabled:
            return
        if restarting:
            self.failures = 0
            self.backoff_delay = 0.0
            self.sup.loop.call_soon(self.reconcile)
            return
        delay = self._next_delay(uptime)
        if delay is None:
            self.given_up = True
            error = f"gave up after {self.failures} quick failures in a row"
            self.last_reason = error
            self.log.error("gave up", failures=self.failures)
            self.emit("app.gave_up", error=error)
            return
        self.backoff_delay = delay
        if delay == 0:
            self.sup.loop.call_soon(self.reconcile)
        else:
            self._retry = self.sup.loop.call_later(delay, self._retry_due)

    def _retry_due(self) -> None:
        self._retry = None
        self.reconcile()

    def _next_delay(self, uptime: float) -> float | None:
        """Seconds before the next start, or None to give up (see Backoff)."""
        b = self.config.backoff
        if uptime >= b.reset:
            self.failures = 0
            return 0.0
        self.failures += 1
        if b.limit and self.failures >= b.limit:
            return None
        if self.failures == 1:
            return 0.0  # one crash is restarted at once; a crash *loop* backs off
        return capped_exponential(b.base, b.factor, self.failures - 2, b.max)

    def _execute_timeout(self) -> None:
        self.log.warning("execute-timeout reached, killing", seconds=self.config.execute_timeout)
        self._stop_reason = "execute-timeout"
        self._kill_all(signal.SIGKILL)

    def _begin_stop(self, reason: str, sig: int) -> None:
        if reason == "restart":
            with self.state.session() as s:
                s.set(restart=False)  # as the original: cleared when the signal is sent
            self._restarting = True
        self._stop_reason = reason
        self._stop_task = self.sup.loop.create_task(self._terminate(sig))
        self._stop_task.add_done_callback(self._stop_done)

    def _stop_done(self, task: asyncio.Task[None]) -> None:
        self._stop_task = None
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
        for handle in (self._retry, self._grace):
            if handle is not None:
                handle.cancel()
        self._retry = self._grace = None
        if self._stop_task is None and self.state.running and not self._stoppable():
            # Only a ping named this pid: nothing Patrol may signal, so nothing to wait for.
            self._close(reason, None)
        if self._stop_task is None and (self.state.running or self.launching or self._groups_alive()):
            self._stop_reason = reason
            self._stop_task = self.sup.loop.create_task(self._terminate(self.config.stop_signal))
            self._stop_task.add_done_callback(self._stop_done)
        if self._stop_task is not None:
            await asyncio.shield(self._stop_task)
        if self._leftovers:
            await asyncio.gather(*self._leftovers, return_exceptions=True)
        await self._stop_escaped(self.now() + self.config.stop_timeout)

    async def _terminate(self, sig: int) -> None:
        """Signal, wait up to stop-timeout, then SIGKILL every group Patrol made for it."""
        deadline = self.now() + self.config.stop_timeout
        pid = self.state.pid or self.launcher_pid
        ours = bool(pid) and self.owns(pid)  # a pid only a ping named is neither signalled nor waited on
        if ours:
            signal_pid(pid, sig)
        else:
            self._signal_groups(sig)  # all Patrol may address: the groups it made
        if await self._wait(lambda: not (ours and pid_alive(pid)), deadline):
            self._signal_groups(signal.SIGTERM)  # leftovers of a clean exit get a polite signal first
            if await self._wait(lambda: not self._groups_alive(), deadline):
                await self._stop_escaped(deadline)
                return self._ended(pid, ours)
        self.log.warning("did not stop in time, killing", timeout=self.config.stop_timeout)
        self._kill_all(signal.SIGKILL)
        await self._wait(lambda: not self._groups_alive() and not (ours and pid_alive(pid)), self.now() + 5)
        await self._stop_escaped(self.now())
        self._ended(pid, ours)

    def _ended(self, pid: int, ours: bool) -> None:
        """After a stop: close an instance whose processes are gone, even if the keepalive
        never said so (it failed, or the exit status went elsewhere), so a stop never
        leaves a dead pid shown running (and a stop retried forever)."""
        if self.state.running and self.state.pid == pid and (ours or self._plugin_error) and not pid_alive(pid):
            self.dead(self._stop_reason or "stopped")
        elif self._plugin_error and (self.state.running or self.launching):
            self.dead(self._stop_reason or "stopped")
        elif self.launching and not self.state.running and pid == self.launcher_pid and not pid_alive(pid) \
                and not self._groups_alive():
            self.dead(self._stop_reason or "stopped")

    def _kill_all(self, sig: int) -> None:
        pid = self.state.pid or self.launcher_pid
        self._signal_groups(sig)
        if pid and self.owns(pid):
            signal_pid(pid, sig)

    def _signal_groups(self, sig: int) -> None:
        """Signal the instance's groups that are still the ones recorded."""
        for pgid, leader in list(self._groups.items()):
            if ownership.group_is_still(pgid, leader):
                signal_group(pgid, sig)
            else:  # emptied, and its number reused by someone else's group
                del self._groups[pgid]

    async def _wait(self, done: Callable[[], bool], deadline: float) -> bool:
        """Wait for ``done()`` until ``deadline``: a bounded wait used only while stopping."""
        delay = 0.002
        while True:
            self.sup.reaper.reap()
            if done():
                return True
            if self.now() >= deadline:
                return False
            await asyncio.sleep(min(delay, max(0.0, deadline - self.now())))
            delay = min(delay * 2, 0.05)

    def _stoppable(self) -> bool:
        """Is there anything Patrol may signal to stop the instance?"""
        pid = self.state.pid or self.launcher_pid
        return bool(pid and self.owns(pid)) or self._groups_alive()

    def _groups_alive(self) -> bool:
        return bool(live_groups(g for g, leader in self._groups.items() if ownership.group_is_still(g, leader)))

    def _cleanup_groups(self) -> None:
        """After an instance ended, processes left in its groups get stopped too, and so do
        processes of the app that left its session (re-parented to Patrol).

        In the background: the next instance has groups of its own and need not wait.
        """
        if self._stop_task is not None:
            return  # the stop in progress takes care of them
        groups = {g: s for g, s in self._groups.items() if ownership.group_is_still(g, s) and group_alive(g)}
        for g in self._groups.keys() - groups.keys():
            self.sup.owners.forget_session(g)
        self._groups = {}
        if groups:
            self.log.info("stopping leftover processes", groups=sorted(groups))
        # what left the session is looked for in the background too: started before now,
        # so the next instance's processes are never taken for leftovers
        self._stop_in_background(groups, {}, escaped_before=ownership.now_ticks())

    def strays(self, found: dict[int, int]) -> None:
        """The tick found these processes (pid -> start time) re-parented to Patrol and
        proven this app's.

        Each is stopped if it cannot be part of the app as it runs now: no instance runs
        (or starts), or it is older than the last launch (left over from an earlier
        instance). A younger one may be the instance's own daemon: left alone.
        """
        busy = self.state.running or self.launching or self._stop_task is not None
        stop = {pid: start for pid, start in found.items()
                if pid not in (self.state.pid, self.launcher_pid) and pid not in self._stopping
                and not (busy and (self._launch_start is None or start >= self._launch_start))}
        if stop:
            self.log.info("stopping processes of the app that left its session", pids=sorted(stop))
            self._stop_in_background({}, stop)

    async def _escaped(self, before: int | None = None) -> dict[int, int]:
        """This app's processes re-parented to Patrol (pid -> start time), except the
        instance, the launcher and those being stopped already."""
        found = await self.sup.owners.children_of(self.key, before)
        return {p: s for p, s in found.items()  # as things are now, after the look
                if p not in (self.state.pid, self.launcher_pid) and p not in self._stopping
                and _same_process(p, s)}

    async def _stop_escaped(self, deadline: float, before: int | None = None) -> None:
        """Stop this app's processes re-parented to Patrol, round after round (stopping
        one may re-parent its children), until none is left."""
        for _ in range(8):
            found = await self._escaped(before)
            if not found:
                return
            self.log.info("stopping processes of the app that left its session", pids=sorted(found))
            await self._stop_processes({}, found, deadline)

    def _stop_in_background(self, groups: dict[int, int | None], procs: dict[int, int],
                            escaped_before: int | None = None) -> None:
        self._stopping.update(procs)  # now: the next sweep must not start a second stop
        task = self.sup.loop.create_task(self._stop_leftovers(groups, procs, escaped_before))
        self._leftovers.add(task)
        task.add_done_callback(self._leftovers.discard)

    async def _stop_leftovers(self, groups: dict[int, int | None], procs: dict[int, int],
                              escaped_before: int | None) -> None:
        deadline = self.now() + self.config.stop_timeout
        if groups or procs:
            await self._stop_processes(groups, procs, deadline)
        if escaped_before is not None:
            await self._stop_escaped(deadline, escaped_before)
        for g in groups:
            self.sup.owners.forget_session(g)

    async def _stop_processes(self, groups: dict[int, int | None], procs: dict[int, int], deadline: float) -> None:
        """SIGTERM, up to ``deadline``, then SIGKILL: groups that are still the recorded
        ones, and processes that are still the recorded ones (pid and start time). A
        process that leads its own group takes its group with it."""
        self._stopping.update(procs)
        alive, busy = dict(procs), dict(groups)  # what may still be there

        async def signal_all(sig: int) -> None:  # in slices: there may be hundreds
            for n, (pgid, leader) in enumerate(list(busy.items()), 1):
                if ownership.group_is_still(pgid, leader):
                    signal_group(pgid, sig)
                if n % 32 == 0:
                    await asyncio.sleep(0)
            for n, (pid, start) in enumerate(list(alive.items()), 1):
                info = ownership.stat(pid)
                if info is not None and info.alive and info.start == start:
                    if info.pgid == pid and pid not in busy:
                        busy[pid] = start  # it leads a group: its group goes with it
                        signal_group(pid, sig)
                    signal_pid(pid, sig)
                if n % 32 == 0:
                    await asyncio.sleep(0)

        def gone() -> bool:  # forgets what is gone: each look costs only what is left
            for pid, start in list(alive.items()):
                if not _same_process(pid, start):
                    del alive[pid]
            if alive:
                return False
            live = live_groups(g for g, s in busy.items() if ownership.group_is_still(g, s))
            for pgid in list(busy):
                if pgid not in live:
                    del busy[pgid]
            return not busy

        try:
            await signal_all(signal.SIGTERM)
            if not await self._wait(gone, deadline):
                await signal_all(signal.SIGKILL)
                await self._wait(gone, self.now() + 5)
        finally:
            self._stopping.difference_update(procs)

    # -- reporting -------------------------------------------------------------------

    @property
    def phase(self) -> str:
        """The state name operators see (new in the API, beside the original's flags)."""
        if self.state.running:
            return "stopping" if self._stop_task is not None else "running"
        if self.launching:
            return "starting"
        if self.state.disabled:
            return "disabled"
        if self.given_up:
            return "given-up"
        if self._retry is not None:
            return "backoff"
        if self._grace is not None:
            return "waiting"  # the startup grace: an app that outlived Patrol may report in
        return "stopped"

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    def emit(self, name: str, **extra: Any) -> None:
        self.sup.emit(name, self, **extra)


def _same_process(pid: int, start: int) -> bool:
    """Is ``pid`` still alive and still the process that started at ``start``?"""
    info = ownership.stat(pid)
    return info is not None and info.alive and info.start == start
