"""One run of an app: what Patrol spawned, which processes are proven its, how they ended.

An :class:`Instance` holds everything about the app's current (or last) run that its
policy (:mod:`patrol.engine.app_runner`) does not decide: the launcher Patrol spawned
and its log pipes, the pid the keepalive reported alive and whether that pid is proven
the app's (:mod:`patrol.engine.ownership`), the process groups Patrol may signal, the
exit status of each process the reaper handed over, and the timers and pid watches
the keepalive took. A spawn starts it afresh; the state file keeps what identifies a
live run (pid start time, groups, pipes) so a restarted Patrol can adopt it.
"""

from __future__ import annotations

import json
import os
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from patrol.engine import ownership, procfs
from patrol.engine.app_owner import AppOwner
from patrol.engine.item_state import HistoryRecord
from patrol.engine.logpipes import InstanceLogs
from patrol.engine.output_lines import OutputLines
from patrol.engine.procfs import Proc
from patrol.engine.signalling import group_alive
from patrol.engine.spawn import LaunchStatus, ProcessSettings, spawn
from patrol.plugin.keepalive import Cancellable, ExitStatus

if TYPE_CHECKING:
    import asyncio

#: The environment a child gets when ``env-parent`` is false. The original gave it
#: nothing at all (no PATH at all, so a bare program name found nothing); this is what
#: systemd gives a service.
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
PASSED_ENV = ("LANG", "LC_ALL", "TZ", "HOME", "USER", "LOGNAME")
#: what an instance not restored from the state file has (one read-only mapping for all)
NO_LEADERS: Mapping[int, int | None] = MappingProxyType({})
#: no exit seen in this run (shared: most runs see none while Patrol watches them, and an
#: empty dict per app is 64 bytes)
NO_EXITS: Mapping[int, ExitStatus] = MappingProxyType({})
#: no group (before the first spawn, after a run's groups were cleaned up): shared
NO_GROUPS: Mapping[int, int | None] = MappingProxyType({})


def _env_file_error() -> type[Exception]:
    """:class:`patrol.util.dotenv.EnvFileError`, imported when an exception needs matching:
    the first app with an ``env-file`` loads the parser, not every Patrol (~20 KB of RSS)."""
    from patrol.util.dotenv import EnvFileError

    return EnvFileError


class ExitWatch:
    """The reaper's callback for one process of a run: ``instance.on_exit(pid, status)``.

    One small object where ``partial(instance.on_exit, pid)`` is four (the partial,
    its tuple and keyword dict, the bound method): ~200 B less for every app that runs.
    """

    __slots__ = ("instance", "pid")

    def __init__(self, instance: "Instance", pid: int) -> None:
        self.instance, self.pid = instance, pid

    @property
    def owner(self) -> str:
        """Whose process it is (the reaper keeps this object as the pid's watcher)."""
        return self.instance.runner.key

    def __call__(self, status: ExitStatus) -> None:
        self.instance.on_exit(self.pid, status)


class OneGroup(Mapping[int, "int | None"]):
    """The groups of a run that made none of its own: the program's, pgid -> its
    leader's start time. Nearly every run has just this one for its whole life, and a
    dict of one item is ~220 bytes per app, this ~50. Read-only: a second group (or
    forgetting this one) makes the run's groups a dict."""

    __slots__ = ("pgid", "leader")

    def __init__(self, pgid: int, leader: int | None) -> None:
        self.pgid, self.leader = pgid, leader

    def __getitem__(self, pgid: int) -> int | None:
        if pgid != self.pgid:
            raise KeyError(pgid)
        return self.leader

    def __contains__(self, pgid: object) -> bool:
        return pgid == self.pgid

    def __iter__(self) -> Iterator[int]:
        yield self.pgid

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        return f"{{{self.pgid}: {self.leader}}}"


class Instance:
    """The processes of an app's current run (see the module docstring)."""

    #: one per app (thousands at once): no per-object __dict__
    __slots__ = ("runner", "launcher_pid", "launching", "logs", "log_pipes", "tentative", "proven", "started_mono",
                 "exits", "groups", "launch_start", "timers", "pid_start", "restored_trust", "restored_leaders",
                 "launch_status", "launch_error", "exit_waiters")

    def __init__(self, runner: AppOwner) -> None:
        self.runner = runner
        self.launcher_pid = 0  # the process Patrol spawned last (0 once it exited)
        self.launching = False  # spawned, not yet reported alive
        self.logs: InstanceLogs | None = None  # the pipes and files of the last spawn
        #: stream -> pipe inode, to read it again after a restart: the state file's (restore),
        #: or None for those of ``logs``, the last spawn's (asked for at each state write:
        #: not kept per app as a dict of their own)
        self.log_pipes: dict[str, int] | None = {}
        self.tentative = False  # the pid is the launcher's until the keepalive names the app's
        self.proven = False  # the pid is proven to be this app's (may be signalled)
        self.started_mono = 0.0
        self.exits: Mapping[int, ExitStatus] = NO_EXITS  # pid -> how it ended (a dict from the first)
        #: process groups of the run that Patrol may signal -> their leader's start time
        #: (None: the leader was gone when the group was recorded)
        self.groups: Mapping[int, int | None] = NO_GROUPS  # (replaced whole, never changed in place)
        self.launch_start: int | None = None  # start time of the last launcher
        #: the keepalive's, cancelled when the run closes (None: none, as for most keepalives)
        self.timers: list[Cancellable] | None = None
        self.pid_start: int | None = None  # the pid's start time (pid reuse guard)
        self.restored_trust = True
        #: the state file's groups -> leader start times (shared and empty until restore())
        self.restored_leaders: Mapping[int, int | None] = NO_LEADERS
        self.launch_status: LaunchStatus | None = None  # the launcher's report, while it may come
        self.launch_error = ""  # why the launcher could not start the program
        #: stops waiting for the run's processes to end: each exit wakes them (None: none waits)
        self.exit_waiters: set[asyncio.Future[None]] | None = None

    # -- spawning --------------------------------------------------------------------

    def spawn(self, now_ns: int) -> int | str:
        """Open the run's log pipes and start the program; its pid, or why not (the
        ``Popen`` is dropped: the reaper owns the exit status, see :class:`Child`)."""
        runner, host, config = self.runner, self.runner.sup, self.runner.config
        extra = self._keepalive_environment()
        if isinstance(extra, str):
            return extra
        settings = ProcessSettings.of_app(config, extra=list(extra))
        try:  # without the launcher, Patrol reads the env file (the app runs as Patrol's user)
            env = {**self.environment(env_file=not settings.launcher), **extra}
        except _env_file_error() as exc:  # (evaluated only when something was raised)
            return str(exc)
        try:  # the app writes into pipes; Patrol writes (and rotates) the files, made once it runs
            logs = host.logs.open_instance(config, now_ns)
        except OSError as exc:
            return f"cannot make the output pipes: {exc.strerror or exc}"
        status = LaunchStatus() if settings.launcher else None
        try:
            proc = spawn(self.argv(), env=env, cwd=config.working_directory, stdout=logs.child_stdout,
                         stderr=logs.child_stderr, settings=settings, status=status)
        except OSError as exc:
            logs.abort()
            if status is not None:
                status.close()
            return f"cannot execute {config.program}: {exc.strerror or exc}"
        finally:
            logs.close_child_ends()
        if self.launch_status is not None:
            self.launch_status.close()  # a launcher of an earlier run that never reported
        self.launch_status, self.launch_error = status, ""
        self.logs, self.log_pipes = logs, None
        self.launcher_pid = proc.pid
        self.launching = True
        self.launch_start, self.groups, self.exits = None, NO_GROUPS, NO_EXITS
        return proc.pid

    def spawned(self, pid: int) -> None:
        """After :meth:`spawn` (at once, or at the end of a start burst: see
        :mod:`patrol.engine.spawn_batch`): prove, watch and read the new process."""
        runner, host = self.runner, self.runner.sup
        if self.launch_status is not None:
            self.launch_status.spawned(host.loop)
        if self.logs is not None:
            self.logs.start()
        self.launch_start = host.owners.spawned(runner.key, pid)  # proof: Patrol spawned it
        self.groups = OneGroup(pid, self.launch_start)  # its own session and group
        host.reaper.watch(pid, ExitWatch(self, pid), owner=runner.key)

    def argv(self) -> list[str]:
        return [self.runner.config.program, *self.runner.config.args]

    def environment(self, *, env_file: bool = True) -> dict[str, str]:
        """The child's environment, in the original's order (later entries win): Patrol's
        (``env-parent``) or a minimal one, the user's ``HOME``, ``USER``, ``LOGNAME`` and
        ``SHELL`` (with ``user``), the ``env-file`` (if ``env_file``: else the launcher
        reads it), ``env``, then Patrol's own variables. Raises :class:`~patrol.util.dotenv.EnvFileError`."""
        cfg, pcfg = self.runner.config, self.runner.sup.config
        if cfg.env_parent:
            env = dict(os.environ)
        else:
            env = dict(BASE_ENV)
            env.update({k: os.environ[k] for k in PASSED_ENV if k in os.environ})
        if cfg.run_as is not None:
            user = cfg.run_as
            env.update(HOME=user.home, USER=user.user, LOGNAME=user.user, SHELL=user.shell)
        if env_file and cfg.env_file:
            from patrol.util.dotenv import read_env_file  # (only a config with env files loads the parser)

            env.update(read_env_file(cfg.env_file_path))
        for entry in cfg.env:
            key, _, value = entry.partition("=")
            env[key] = value
        env["PATROL_ID"] = self.runner.id
        if cfg.instance_of:
            env["PATROL_INSTANCE"] = str(cfg.instance)
            env["PATROL_INSTANCES"] = str(self.runner.sup.instances(cfg.instance_of))
        env["PATROL_KEEPALIVE"] = str(self._keepalive_number())
        if cfg.pid_path:
            env["PATROL_PID"] = cfg.pid_file
        if pcfg.listen_http:
            env["PATROL_HTTP"] = json.dumps(list(pcfg.listen_http), separators=(",", ":"))
        if pcfg.listen_udp:
            env["PATROL_UDP"] = json.dumps(list(pcfg.listen_udp), separators=(",", ":"))
        return env

    def _keepalive_environment(self) -> dict[str, str] | str:
        """What the keepalive adds to this spawn's environment (``NOTIFY_SOCKET``), or
        why the start fails (the plugin raised, or gave something that is no environment)."""
        runner = self.runner
        try:
            extra = dict(runner.keepalive.environment())
            if not all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
                       for k, v in extra.items()):
                raise TypeError("not a mapping of variable names to strings")
        except Exception as exc:  # noqa: BLE001 - a plugin's bug fails this start only
            runner.log.error("keepalive plugin failed", plugin=runner.plugin, where="environment()",
                             error=f"{type(exc).__name__}: {exc}", exc_info=exc)
            return (f"keepalive {runner.config.keepalive!r} (plugin {runner.plugin}) failed in environment(): "
                    f"{type(exc).__name__}: {exc}")
        return extra

    def output_lines(self) -> OutputLines | None:
        """The listeners of the run's output (None: Patrol does not read it)."""
        return self.logs.output if self.logs is not None else None

    def probe_environment(self) -> dict[str, str]:
        """The environment of a program run on the app's behalf (an ``exec`` probe): the
        app's, without its env file when the launcher reads that as the app's user."""
        return self.environment(env_file=not ProcessSettings.of(self.runner.config).launcher)

    def _keepalive_number(self) -> int | str:
        keepalive = self.runner.keepalive
        numbers = [a for a in keepalive.aliases if isinstance(a, int)]
        return numbers[0] if numbers else keepalive.name

    def on_exit(self, pid: int, status: ExitStatus) -> None:
        """The reaper's report of a process of this app (the launcher or the app)."""
        if pid == self.launcher_pid and self.launch_status is not None:
            self.launch_error = self.launch_status.read()  # written before it exited: there now
            self.launch_status.close()
            self.launch_status = None
        exits = self.exits if isinstance(self.exits, dict) else {}
        exits[pid] = status
        self.exits = exits
        try:
            self.runner.control.call("child_exited", pid, status)
        finally:
            if pid == self.launcher_pid:
                self.launcher_pid = 0
            for waiter in self.exit_waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    # -- the pid of the run ----------------------------------------------------------

    def begin(self, pid: int, tentative: bool) -> None:
        """The keepalive reported the app alive: the run's pid is ``pid`` (0: unknown)."""
        self.launching = False
        self.tentative = tentative
        self.proven = False
        self.started_mono = self.runner.now()
        if pid:
            self.track(pid)

    def track(self, pid: int) -> None:
        """A new pid of the run: if it is proven this app's, watch its exit and its group.

        A pid that is not proven (only a ping or a pid file named it) is only recorded:
        its exit status stays with whoever watches it, and its group is not added.
        """
        if pid == self.launcher_pid and self.launch_start is not None and self.runner.sup.owners.known(pid):
            # The process Patrol has just spawned, not reaped yet (so its pid cannot name
            # another process): spawn() proved and recorded it, and it leads its own group.
            self.pid_start, self.proven = self.launch_start, True
            return
        info = procfs.stat(pid)
        self.pid_start = info.start if info is not None else None
        self.proven = info is not None and self.runner.owns(pid)
        if not self.proven or info is None:
            return
        if pid not in self.exits and pid != self.launcher_pid:
            self.runner.sup.reaper.watch(pid, ExitWatch(self, pid), owner=self.runner.key)
        pgid = info.pgid
        if pgid and pgid not in self.groups and self._group_is_ours(pid, info):
            leader = procfs.stat(pgid)
            self.groups = {**self.groups, pgid: leader.start if leader is not None else None}

    def _group_is_ours(self, pid: int, info: Proc) -> bool:
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
        leader = procfs.stat(pgid)
        return leader is not None and self.runner.owns(pgid)

    def forget(self) -> None:
        """The run closed: its timers and watches end, its pid proves nothing any more."""
        timers, self.timers = self.timers, None
        for timer in timers or ():
            timer.cancel()
        self.tentative = self.proven = False

    def record(self, reason: str, status: ExitStatus | None, *, restart: bool) -> HistoryRecord:
        """The history record of the run that ends now."""
        runner = self.runner
        st, wall = runner.state, runner.sup.wall()
        lastseen = st.lastseen
        if lastseen is None and runner.keepalive.ping_transport is None:
            lastseen = wall  # the original reports "now" for a never-refreshed run
        return HistoryRecord(
            instance_id=st.instance_id, started=st.started, stopped=wall, lastseen=lastseen, pid=st.pid,
            disabled=st.disabled, restart=restart, run_once=st.run_once_consumed,
            shutdown=runner.sup.shutting_down, exit_code=status.compat_code if status else 0,
            exit_signal=status.signal if status else None,
            reason="" if reason == "exited" else reason,  # the app's own exit needs no reason
            keyvalue=dict(st.keyvalue), log=st.started_log.stdout if st.started_log else "",
        )

    # -- the state file --------------------------------------------------------------

    def restore(self, row: dict[str, Any]) -> None:
        """The state file had this app: remember what identifies its live run."""
        self.pid_start = row.get("pid-start")
        self.restored_trust = bool(row.get("trusted", True))  # a pid only a ping named stays unproven
        leaders = row.get("group-leaders") or {}
        restored: dict[int, int | None] = {}
        for g in row.get("groups", ()):
            leader = leaders.get(str(g)) if isinstance(leaders, dict) else None
            restored[int(g)] = int(leader) if isinstance(leader, int) else None
        self.restored_leaders = restored
        pipes = row.get("log-pipes")
        self.log_pipes = {k: v for k, v in pipes.items() if isinstance(v, int)} if isinstance(pipes, dict) else {}

    def persist(self) -> dict[str, Any]:
        """What the state file needs beyond the item's state to adopt the run later."""
        return {"pid-start": self.pid_start, "groups": sorted(self.groups), "trusted": self.proven,
                "group-leaders": {str(g): s for g, s in sorted(self.groups.items())},
                "log-pipes": self.pipes}

    @property
    def pipes(self) -> dict[str, int]:
        """The run's pipe inodes (see ``log_pipes``)."""
        if self.log_pipes is not None:
            return self.log_pipes
        return self.logs.pipes if self.logs is not None else {}

    def adopt(self) -> bool:
        """Take over the run that was live when Patrol stopped, if it is the very same
        process: same pid *and* same start time (a pid alone may have been reused).
        False when it ended while Patrol was away."""
        runner, host = self.runner, self.runner.sup
        pid = runner.state.pid
        info = procfs.stat(pid) if pid else None
        if info is None or not info.alive or self.pid_start is None or info.start != self.pid_start:
            self.groups = NO_GROUPS
            return False
        if self.restored_trust:  # it was proven before Patrol stopped: still the same process
            host.owners.restored(runner.key, pid, info.start)
        self.proven = runner.owns(pid)
        self.started_mono = host.now() - max(0.0, host.wall() - (runner.state.started or 0))
        self.groups = {g: s for g, s in self.restored_leaders.items()
                       if ownership.group_is_still(g, s) and group_alive(g)}
        for g, s in self.groups.items():
            host.owners.session(runner.key, g, s)
        return True

    def reattach_logs(self) -> None:
        """Read an adopted run's output pipes again (Patrol restarted)."""
        runner = self.runner
        self.logs = runner.sup.logs.reattach(runner.config, runner.state.started_log, self.pipes,
                                             runner.state.pid)
