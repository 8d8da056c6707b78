"""Processes: spawning, the one reaper, exit watching, process-group signalling.

Design (see docs/architecture.md):

* **One reaper.** Patrol is a child subreaper, so orphaned grandchildren are re-parented
  to it. Exactly one place reaps: on SIGCHLD, ``waitpid(-1, WNOHANG)`` in a loop, handing
  each status to whoever watches that pid. asyncio's own child watchers are never used
  (they would steal statuses from each other), so Patrol never calls
  ``asyncio.create_subprocess_*``; service commands go through :func:`run_command`.
* **pidfds for watching.** ``os.pidfd_open`` tells when a process that is *not* our child
  exits (an adopted daemon), without polling.
* **Every app in its own session**, so a stop can reach the whole process group.
* **One watcher per pid.** A pid's exit status goes to the item that watches it; a
  second item asking to watch the same pid is refused (and logged), never swapped in.
* **A guard in the signalling functions.** :func:`signal_pid` and :func:`signal_group`
  refuse pid 1, Patrol itself and its ancestors (:mod:`patrol.ownership`), whoever asks.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import structlog

from patrol.plugin.keepalive import ExitStatus
from patrol.engine.ownership import is_protected, is_protected_group
from patrol.engine.signals import SignalRouter

log = structlog.get_logger("patrol.process")

PR_SET_CHILD_SUBREAPER = 36
#: pid_t is a signed 32-bit integer: a larger pid (the API accepts the original's uint32
#: range in pings) names no process, and os.kill() and friends raise OverflowError on it.
PID_T_MAX = 2**31 - 1


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux >= 3.4)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except OSError:
        return False


class Reaper:
    """Reaps every child on SIGCHLD and hands the status to the pid's watcher.

    ``reaped`` is told every reaped pid (its number may now name another process).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, signals: SignalRouter | None = None,
                 reaped: Callable[[int], None] | None = None) -> None:
        self.loop = loop
        self.signals = signals or SignalRouter(loop)
        self._watchers: dict[int, tuple[str, Callable[[ExitStatus], None]]] = {}
        self._reaped = reaped
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            self.signals.add(signal.SIGCHLD, self.reap)
            self._installed = True
            self.reap()  # children that exited before the handler existed

    def uninstall(self) -> None:
        if self._installed:
            self.signals.remove(signal.SIGCHLD)
            self._installed = False

    def watch(self, pid: int, callback: Callable[[ExitStatus], None], owner: str = "") -> bool:
        """Hand ``pid``'s exit status to ``callback``; False (and logged) when another
        owner watches it already: one watcher per pid, never replaced by someone else."""
        current = self._watchers.get(pid)
        if current is not None and current[0] != owner:
            log.warning("refused to watch a pid another item watches", pid=pid, owner=current[0], asked_by=owner)
            return False
        self._watchers[pid] = (owner, callback)
        return True

    def watcher(self, pid: int) -> str | None:
        """Who watches ``pid`` (None: nobody)."""
        current = self._watchers.get(pid)
        return current[0] if current is not None else None

    def unwatch(self, pid: int) -> None:
        self._watchers.pop(pid, None)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            exit_status = ExitStatus.from_wait_status(status)
            if self._reaped is not None:
                self._reaped(pid)
            watcher = self._watchers.pop(pid, None)
            if watcher is None:
                log.debug("reaped", pid=pid, status=str(exit_status))
                continue
            try:
                watcher[1](exit_status)
            except Exception:  # noqa: BLE001 - the reaper must keep reaping
                log.exception("exit callback failed", pid=pid)


class PidWatch:
    """Calls back once when a process exits, through a pidfd (no polling)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pid: int, callback: Callable[[], None]) -> None:
        self.loop = loop
        self.fd = os.pidfd_open(pid)
        self.callback = callback
        loop.add_reader(self.fd, self._fire)

    def _fire(self) -> None:
        self.cancel()
        self.callback()

    def cancel(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1


def watch_pid(loop: asyncio.AbstractEventLoop, pid: int, callback: Callable[[], None]) -> PidWatch | None:
    try:
        return PidWatch(loop, pid, callback)
    except (OSError, OverflowError):  # OverflowError: a pid beyond pid_t (see PID_T_MAX)
        return None


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    stdout: int | None,
    stderr: int | None,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start a program in a new session (its own process group) and return at once.

    The caller owns the exit status through the :class:`Reaper`; the returned Popen is
    never waited on.
    """
    return subprocess.Popen(
        list(argv),
        executable=argv[0],
        env=dict(env),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
    )


def signal_pid(pid: int, sig: int) -> bool:
    """Send ``sig`` to ``pid``; False when it no longer exists or must not be signalled.

    Pid 1, Patrol and its ancestors are refused here, whatever the caller proved.
    """
    if not 0 < pid <= PID_T_MAX:
        return False
    if sig != 0 and is_protected(pid):
        log.error("refused to signal a protected process (pid 1, Patrol or an ancestor)", pid=pid, signal=sig)
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to signal", pid=pid, signal=sig)
        return False


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a whole process group; False when empty or refused.

    Never Patrol's own group, nor one led by or holding pid 1 or an ancestor of Patrol.
    """
    if not 1 < pgid <= PID_T_MAX or pgid == os.getpgrp():
        return False
    if sig != 0 and is_protected_group(pgid):
        log.error("refused to signal a protected process group", pgid=pgid, signal=sig)
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to signal group", pgid=pgid, signal=sig)
        return False


def group_alive(pgid: int) -> bool:
    """Does the group have a member that is not a zombie?

    ``killpg(pgid, 0)`` also succeeds for zombies, and the zombies of processes that are
    not Patrol's children (adopted after a restart) are reaped by someone else, maybe
    late; only then is ``/proc`` read to look for a live member.
    """
    return bool(live_groups([pgid]))


def live_groups(pgids: Iterable[int]) -> set[int]:
    """The groups of ``pgids`` that have a member that is not a zombie (see group_alive).

    Cheap first: ``killpg(pgid, 0)`` drops empty groups, a live leader (pid == pgid)
    proves its group; one scan of ``/proc`` settles the rest, however many there are.
    """
    live: set[int] = set()
    unsure: set[int] = set()
    for pgid in pgids:
        if not signal_group(pgid, 0):
            continue
        fields = _stat_fields(pgid)
        if fields and len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            live.add(pgid)
        else:
            unsure.add(pgid)
    if not unsure:
        return live
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                fields = _stat_fields(int(entry.name))
                if fields and len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) in unsure:
                    live.add(int(fields[2]))
                    unsure.discard(int(fields[2]))
                    if not unsure:
                        break
    return live


def pid_alive(pid: int) -> bool:
    """kill -0 semantics, except that EPERM means alive (the original said dead)."""
    if not 0 < pid <= PID_T_MAX:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) not in ("Z", "X", None)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'
    return data[data.rfind(")") + 2 :].split()


def _state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def start_time(pid: int) -> int | None:
    """The process start time in clock ticks since boot (identity against pid reuse)."""
    fields = _stat_fields(pid)
    if not fields or len(fields) < 20:
        return None
    return int(fields[19])


def getpgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except (OSError, OverflowError):
        return 0


@dataclass
class CommandResult:
    """Outcome of :func:`run_command`."""

    argv: list[str]
    status: ExitStatus | None  # None when it could not be started
    output: str = ""
    timed_out: bool = False
    error: str = ""

    @property
    def exit_code(self) -> int | None:
        return self.status.code if self.status else None


async def run_command(
    argv: Sequence[str],
    reaper: Reaper,
    *,
    timeout: float,
    max_output: int = 64 * 1024,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run a command without blocking the loop; kill its whole group on timeout.

    Output (stdout and stderr together) is captured up to ``max_output`` bytes; the
    rest is counted and dropped so a chatty command cannot exhaust memory.
    """
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    if env is None:  # Patrol's own environment, without an app marker it may have inherited
        env = {k: v for k, v in os.environ.items() if k != "PATROL_ID"}
    try:
        proc = spawn(argv, env=env, cwd="/", stdout=write_fd, stderr=write_fd)
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        return CommandResult(list(argv), None, error=f"{exc.strerror or exc}")
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    exited: asyncio.Future[ExitStatus] = loop.create_future()
    eof: asyncio.Future[None] = loop.create_future()
    chunks: list[bytes] = []
    size = dropped = 0

    def on_exit(status: ExitStatus) -> None:
        proc.returncode = status.code if status.code is not None else -(status.signal or 0)
        if not exited.done():
            exited.set_result(status)

    def on_readable() -> None:
        nonlocal size, dropped
        try:
            data = os.read(read_fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EINTR:
                data = b""
            else:
                return
        if not data:
            loop.remove_reader(read_fd)
            if not eof.done():
                eof.set_result(None)
            return
        keep = max(0, min(len(data), max_output - size))
        chunks.append(data[:keep])
        size += keep
        dropped += len(data) - keep

    reaper.watch(proc.pid, on_exit, owner=f"command/{proc.pid}")
    reaper.reap()  # in case it already exited before we watched
    loop.add_reader(read_fd, on_readable)
    timed_out = False
    try:
        try:
            await asyncio.wait_for(asyncio.shield(exited), timeout)
        except asyncio.TimeoutError:
            timed_out = True
            signal_group(proc.pid, signal.SIGKILL)
            await exited
        # What it left behind may hold the pipe open (a daemon that a ``start`` launched
        # without redirecting its output): that is the service, not a leftover to kill.
        try:
            await asyncio.wait_for(asyncio.shield(eof), 0.5)
        except asyncio.TimeoutError:
            pass
    finally:
        if not exited.done():  # cancelled: do not leave the command behind
            signal_group(proc.pid, signal.SIGKILL)
        if eof.done():
            os.close(read_fd)
        else:  # keep reading (and dropping) so a later write does not kill it by SIGPIPE
            loop.remove_reader(read_fd)
            loop.add_reader(read_fd, _drain, loop, read_fd)
    output = b"".join(chunks).decode(errors="replace")
    if dropped:
        output += f"\n[... {dropped} more bytes dropped]"
    return CommandResult(list(argv), exited.result(), output, timed_out)


def _drain(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Discard what arrives on a finished command's pipe; close it at end of file."""
    try:
        if os.read(fd, 65536):
            return
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        pass
    loop.remove_reader(fd)
    os.close(fd)
