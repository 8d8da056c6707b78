"""One app's supervision: spawn, watch, stop, restart, back off, record history.

The runner is event-driven: a keepalive method reports the app alive or dead (through
the :class:`patrol.keepalive.AppControl` methods implemented here) and the runner reacts
at once: a dead app is restarted immediately, or after a backoff when it keeps crashing.
The supervisor's tick only reconciles (``check`` and the ``running``/``disabled`` events).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

import structlog

from .config.model import AppConfig, PatrolConfig
from .keepalive import Cancellable, ExitStatus, KeepAlive
from .logpipe import InstanceLogs
from .process import (
    getpgid,
    group_alive,
    pid_alive,
    signal_group,
    signal_pid,
    spawn,
    start_time,
    watch_pid,
)
from .state import DISABLE, HistoryRecord, State, new_instance_id

if TYPE_CHECKING:
    from .supervisor import Supervisor

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
        self._trusted_pid = False
        self._started_mono = 0.0
        self._exits: dict[int, ExitStatus] = {}
        self._groups: set[int] = set()  # process groups Patrol created for the instance
        self._timers: list[Cancellable] = []  # owned by the current instance
        self._retry: asyncio.TimerHandle | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._stop_reason = ""
        self._restarting = False
        self._pid_start: int | None = None  # the instance pid's start time (pid reuse guard)
        self._restored_trust = True

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

    def now(self) -> float:
        return self.sup.now()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        handle = self.sup.loop.call_later(delay, callback)
        # forget cancelled timers: a keepalive re-arming one per period must not grow this list
        self._timers = [t for t in self._timers if not (isinstance(t, asyncio.TimerHandle) and t.cancelled())]
        self._timers.append(handle)
        return handle

    def watch_pid(self, pid: int, callback: Callable[[], None]) -> Cancellable | None:
        watch = watch_pid(self.sup.loop, pid, callback)
        if watch is not None:
            self._timers.append(watch)
        return watch

    def alive(self, pid: int, *, tentative: bool = False, trusted: bool = False, pinged: bool = False) -> None:
        st = self.state
        if st.running and pid and st.pid and pid != st.pid and not self._tentative:
            self._close("pid changed", None)
        if not st.running:
            self._new_instance(pid, tentative, trusted, "app.started_pinged" if pinged else "app.started")
            return
        with st.session() as s:
            if pid and pid != st.pid:  # the launcher's pid is replaced by the real one
                s.set(pid=pid)
                self._tentative = tentative
                self._trusted_pid = trusted
                self._track(pid)
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
        self.keepalive.adopt()
        self.reconcile()

    # -- persistence -----------------------------------------------------------------

    def restored(self, row: dict[str, Any]) -> None:
        """The state file had this app: remember what identifies its live instance."""
        self._pid_start = row.get("pid-start")
        self._restored_trust = bool(row.get("trusted", True))  # a pid only a ping named stays untrusted
        self._groups = {int(g) for g in row.get("groups", ())}
        self._known = True  # no startup grace: the state file says whether it was running
        pipes = row.get("log-pipes")
        self._log_pipes = {k: v for k, v in pipes.items() if isinstance(v, int)} if isinstance(pipes, dict) else {}

    def persist_extra(self) -> dict[str, Any]:
        """What the state file needs beyond :class:`State` to adopt the instance later."""
        return {"pid-start": self._pid_start, "groups": sorted(self._groups), "trusted": self._trusted_pid,
                "log-pipes": self._log_pipes}

    def _adopt_restored(self) -> None:
        """Adopt the instance that ran when Patrol stopped, if it is the very same process.

        Same pid *and* same process start time (a pid alone may have been reused).
        Otherwise the instance ended while Patrol was away: close it into history.
        """
        pid = self.state.pid
        if pid and pid_alive(pid) and self._pid_start is not None and start_time(pid) == self._pid_start:
            self._trusted_pid = self._restored_trust
            self._started_mono = self.now() - max(0.0, self.sup.wall() - (self.state.started or 0))
            self._groups = {g for g in self._groups if group_alive(g)}
            self.starts += 1
            self.log.info("adopted", pid=pid, instance=self.state.instance_id)
            self._logs = self.sup.logs.reattach(self.config, self.state.started_log, self._log_pipes, pid)
        else:
            self._groups = set()
            self._close("gone while Patrol was down", None)

    def tick(self) -> None:
        self.keepalive.check()
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
                        self.fault(f"disabled, but pid {st.pid} was not started by Patrol and is not "
                                   "signalled; it is closed when its pings stop")
            return
        if st.disabled or self.given_up or self._retry is not None or self._stop_task is not None:
            return
        grace = 0.0 if self._known else self.keepalive.startup_grace()
        grace_left = self.sup.started_mono + grace - self.now()
        if grace_left > 0:
            if self._grace is None:
                self._grace = self.sup.loop.call_later(grace_left, self._grace_over)
            return
        self.spawn()

    def _grace_over(self) -> None:
        self._grace = None
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
        self._groups = {proc.pid}
        self._exits = {}
        self.sup.reaper.watch(proc.pid, partial(self._on_exit, proc.pid, proc))
        with self.state.session() as s:
            s.set(started_log=logs.files)
        self.log.info("spawned", pid=proc.pid, program=self.config.program)
        self.keepalive.spawned(proc.pid)
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
            self.keepalive.child_exited(pid, status)
        finally:
            if pid == self.launcher_pid:
                self.launcher_pid = 0

    def _track(self, pid: int) -> None:
        """Watch an instance pid's exit status and remember its group if Patrol made it."""
        self._pid_start = start_time(pid)
        if pid not in self._exits and pid != self.launcher_pid:
            self.sup.reaper.watch(pid, partial(self._on_exit, pid, None))
        pgid = getpgid(pid)
        if pgid and (pgid in self._groups or _parent(pid) == os.getpid()):
            self._groups.add(pgid)

    def _new_instance(self, pid: int, tentative: bool, trusted: bool, event: str) -> None:
        self.launching = False
        self._tentative = tentative
        self._trusted_pid = trusted
        self._started_mono = self.now()
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
        self._tentative = self._trusted_pid = False
        self.fault_message = None
        self.keepalive.closed()

    def _after_death(self, uptime: float) -> None:
        self._cleanup_groups()
        restarting, self._restarting = self._restarting, False
        self._stop_reason = ""
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
        return min(b.base * b.factor ** (self.failures - 2), b.max)

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
        is retired and never starts the app again.
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

    async def _terminate(self, sig: int) -> None:
        """Signal, wait up to stop-timeout, then SIGKILL every group Patrol made for it."""
        deadline = self.now() + self.config.stop_timeout
        pid = self.state.pid or self.launcher_pid
        ours = bool(pid) and self._may_signal(pid)  # a pid only a ping named is not waited on
        if ours:
            signal_pid(pid, sig)
        else:
            for pgid in self._groups:  # all Patrol may address: the groups it made
                signal_group(pgid, sig)
        if await self._wait(lambda: not (ours and pid_alive(pid)), deadline):
            for pgid in self._groups:  # leftovers of a clean exit get a polite signal first
                signal_group(pgid, signal.SIGTERM)
            if await self._wait(lambda: not self._groups_alive(), deadline):
                return
        self.log.warning("did not stop in time, killing", timeout=self.config.stop_timeout)
        self._kill_all(signal.SIGKILL)
        await self._wait(lambda: not self._groups_alive() and not (ours and pid_alive(pid)), self.now() + 5)

    def _kill_all(self, sig: int) -> None:
        pid = self.state.pid or self.launcher_pid
        for pgid in self._groups:
            signal_group(pgid, sig)
        if pid and self._may_signal(pid):
            signal_pid(pid, sig)

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
        return bool(pid and self._may_signal(pid)) or self._groups_alive()

    def _groups_alive(self) -> bool:
        return any(group_alive(g) for g in self._groups)

    def _cleanup_groups(self) -> None:
        """After an instance ended, processes left in its groups get stopped too.

        In the background: the next instance has groups of its own and need not wait.
        """
        groups = {g for g in self._groups if group_alive(g)}
        if self._stop_task is not None or not groups:
            return
        self._groups = set()
        self.log.info("stopping leftover processes", groups=sorted(groups))
        task = self.sup.loop.create_task(self._stop_leftovers(groups))
        self._leftovers.add(task)
        task.add_done_callback(self._leftovers.discard)

    async def _stop_leftovers(self, groups: set[int]) -> None:
        def gone() -> bool:
            return not any(group_alive(g) for g in groups)

        for pgid in groups:
            signal_group(pgid, signal.SIGTERM)
        if not await self._wait(gone, self.now() + self.config.stop_timeout):
            for pgid in groups:
                signal_group(pgid, signal.SIGKILL)
            await self._wait(gone, self.now() + 5)

    def _may_signal(self, pid: int) -> bool:
        """Only signal processes Patrol started or was told about by a trusted source.

        A pid from a ping is not proof of anything (spec 10.17): anyone who can reach
        the API could otherwise make Patrol signal an arbitrary process.
        """
        if pid == self.launcher_pid or self._trusted_pid:
            return True
        return getpgid(pid) in self._groups or _parent(pid) == os.getpid()

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
        return "stopped"

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    def emit(self, name: str, **extra: Any) -> None:
        self.sup.emit(name, self, **extra)


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2 :].split()[1])
    except (OSError, ValueError, IndexError):
        return 0
