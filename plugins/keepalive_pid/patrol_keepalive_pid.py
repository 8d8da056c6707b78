"""Patrol keepalives ``pid-patrol`` (1) and ``pid-app`` (2).

``pid-patrol``: the process Patrol spawns *is* the app; its exit, seen at once through
the reaper, ends the instance.

``pid-app``: the app writes its own PID file and may fork away from the launcher Patrol
spawned. Fixes of the original: PIDs of any size; surrounding whitespace tolerated; a
freshly spawned app gets ``pid-grace`` seconds to write its file before Patrol would
spawn another copy; PID reuse is detected (a process younger than its PID file, or
younger than the launcher that should have made it, is not the app); ``EPERM`` means
alive; ``pid-verify`` compares the process's executable/command line with the app's
binary; exit is watched through a pidfd, with the tick as a fallback.

The pid file is outside input: anyone who can write it names a pid. So it is read
without ever blocking (a FIFO there would freeze Patrol: ``O_NONBLOCK``, and anything
but a regular file is refused, read at most 64 bytes), and what it names is adopted
only if plausible: never Patrol, pid 1 or an ancestor of Patrol; outside the pid-grace
of a launch never a process older than that launch; never while the app is disabled.
Refusals are shown as the app's ``fault``. Adopting a pid does not make it signalled:
Patrol signals only processes it proves to be the app's.
"""

from __future__ import annotations

import os
import time

from patrol import (AppConfig, AppControl, Cancellable, ExitStatus, KeepAlive, NotRegularFile, Option, Register,
                    hookimpl, is_protected, process_command, read_process, read_small_file)

PID_MAX = 2**31 - 1
#: Clock slack when comparing process start times with file times (clock ticks, NTP).
SLACK = 1.0
#: The most of a pid file that is read: a pid and some whitespace.
MAX_PID_FILE = 64


class PidPatrol(KeepAlive):
    """The spawned child is the app (keepalive 1)."""

    name = "pid-patrol"
    aliases = (1,)
    requires_pid_path = True

    def spawned(self, pid: int) -> None:
        self.app.alive(pid)  # its exit ends the instance (KeepAlive.child_exited)


#: what read_pid_file raises for a FIFO, a device, a socket or a directory
NotARegularFile = NotRegularFile


def read_pid_file(path: str) -> tuple[int | None, float]:
    """The pid in ``path`` and the file's mtime; the pid is None if unusable.

    Never blocks (``patrol.read_small_file``: a FIFO is refused without waiting for a
    writer, anything but a regular file too) and reads at most :data:`MAX_PID_FILE`
    bytes (``/dev/zero`` or a huge file cost nothing). Raises :data:`NotARegularFile`
    for anything but a regular file, ``OSError`` when it cannot be opened.
    """
    data, info = read_small_file(path, MAX_PID_FILE)
    text = data.strip()
    if not text.isdigit():
        return None, info.st_mtime
    pid = int(text)
    return (pid if 0 < pid <= PID_MAX else None), info.st_mtime


def read_pid(path: str) -> int | None:
    """The pid in ``path``: decimal, whitespace around it tolerated; None if unusable
    (missing, unreadable, not a regular file, not a pid)."""
    try:
        return read_pid_file(path)[0]
    except OSError:
        return None


class PidApp(KeepAlive):
    """The app writes its pid file and may daemonize (keepalive 2)."""

    name = "pid-app"
    aliases = (2,)
    requires_pid_path = True
    options = (
        Option(
            "pid-grace",
            (int, float),
            10.0,
            "seconds a freshly spawned app has to write its pid file",
            lambda v: None if v > 0 else "must be greater than 0",
        ),
    )

    @classmethod
    def validate(cls, app: AppConfig) -> list[tuple[str, str]]:
        if app.instances and "{instance}" not in app.pid_path:
            return [("pid-path", 'must contain "{instance}" when "instances" is set: each copy of the app '
                     "writes its own pid file, which tells it from the others")]
        return []

    def __init__(self, app: AppControl) -> None:
        super().__init__(app)
        self._launcher = 0
        self._spawned_at = 0.0  # wall time of the last spawn
        self._deadline = 0.0  # monotonic end of the grace period
        self._poll: Cancellable | None = None
        self._watch: Cancellable | None = None
        self._refused = False  # the last look at the pid file refused what it names

    # -- events ----------------------------------------------------------------------

    def adopt(self) -> None:
        if not self.app.running:
            self.check()  # an app started behind Patrol's back (not while disabled)
            return
        pid = self._valid_pid()
        if pid:
            self._found(pid)
        else:  # restored from the state file, but the pid file disowns it
            self.app.dead("pid file missing, invalid, or its process is gone")

    def spawned(self, pid: int) -> None:
        self._launcher = pid
        self._spawned_at = time.time()
        self._deadline = self.app.now() + float(self.app.config.options.get("pid-grace", 10.0))
        self._poll_in(0.01)

    def child_exited(self, pid: int, status: ExitStatus) -> None:
        if self.app.running and pid == self.app.pid:
            self.app.dead("exited", status)
        elif not self.app.running and pid == self._launcher:
            found = self._valid_pid()
            if found:
                self._found(found)
            elif status.code != 0:
                self._stop_polling()
                self.app.dead("launcher failed before writing the pid file", status)

    def check(self) -> None:
        if self._poll is not None:  # still inside the grace period of a spawn
            return
        pid = self._valid_pid()
        if not self.app.running:
            if pid and self.app.disabled:  # never adopt into a stop
                self._refuse(f"pid file {self.app.config.pid_file} names running pid {pid}: "
                             "not adopted while the app is disabled")
            elif pid:
                self._found(pid)  # an app started behind Patrol's back: adopt it
            elif not self._refused:
                self.app.fault(None)  # nothing refused now: an earlier refusal is over
            return
        if pid is None:
            if self._still_the_app():
                # The file went bad but the process we watch lives: keep it, say so, and
                # never start a second copy (the pidfd tells when it really exits).
                self.app.fault(f"pid file {self.app.config.pid_file} is missing or invalid; "
                               f"still watching pid {self.app.pid}")
                return
            self.app.dead("pid file missing, invalid, or its process is gone")
            return
        self.app.fault(None)
        if pid != self.app.pid:
            self._found(pid)  # the app re-executed or forked: new instance
        else:
            self.app.alive(pid)  # refreshes lastseen (the original's per-tick beat)

    def closed(self) -> None:
        self._stop_polling()
        self._watch = None

    # -- helpers ---------------------------------------------------------------------

    def _still_the_app(self) -> bool:
        info = read_process(self.app.pid)
        return info is not None and info.alive

    def _poll_in(self, delay: float) -> None:
        self._poll = self.app.call_later(delay, lambda: self._poll_once(delay))

    def _poll_once(self, delay: float) -> None:
        """While the app starts: look for its pid file, a little less often each time."""
        self._poll = None
        pid = self._valid_pid()
        if pid:
            self._found(pid)
        elif self.app.now() >= self._deadline:
            self.app.dead("pid file not written within pid-grace")
        else:
            self._poll_in(min(delay * 2, 0.5, max(0.001, self._deadline - self.app.now())))

    def _stop_polling(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None

    def _found(self, pid: int) -> None:
        self._stop_polling()
        self.app.alive(pid)
        if self.app.pid == pid:
            self._watch = self.app.watch_pid(pid, lambda: self._gone(pid))

    def _gone(self, pid: int) -> None:
        if not (self.app.running and self.app.pid == pid):
            return
        new = self._valid_pid()
        if new and new != pid:
            self._found(new)  # it handed over to a new process before exiting
        else:
            self.app.dead("exited")

    def _valid_pid(self) -> int | None:
        """The pid from the file, if it is alive and plausibly the app.

        A refusal that an operator should see (a file that is not a regular file, a pid
        Patrol must never adopt, a process older than the last launch once the pid-grace
        is over) is reported as the app's fault; a file not yet written is not.
        """
        path = self.app.config.pid_file
        self._refused = False
        try:
            pid, written = read_pid_file(path)
        except NotRegularFile:
            self._refuse(f"pid file {path} is not a regular file (a FIFO, device or directory): not read")
            return None
        except OSError:
            return None
        if pid is None:
            return None
        if is_protected(pid):
            self._refuse(f"pid file {path} names pid {pid}, which is Patrol itself, pid 1 or an ancestor "
                         "of Patrol: never adopted")
            return None
        proc = read_process(pid)  # /proc/PID/stat: readable whoever owns the process (the original
        if proc is None or not proc.alive:  # took EPERM from kill() for dead)
            return None
        created = proc.started_at
        if created > written + SLACK:
            return None  # the process is younger than the pid file: the pid was reused
        if self._spawned_at and created < self._spawned_at - SLACK:
            if self.app.now() >= self._deadline:  # the pid-grace is over: say why it is not adopted
                self._refuse(f"pid file {path} names pid {pid}, which is older than the app's last start: "
                             "not adopted")
            return None  # older than the launcher that should have made it: stale file
        if self.app.config.pid_verify and not (self.app.owns(pid) or matches_program(pid, self.app.config)):
            return None
        return pid

    def _refuse(self, message: str) -> None:
        self._refused = True
        self.app.fault(message)


def matches_program(pid: int, config: AppConfig) -> bool:
    """pid-verify: is ``pid`` running the app's binary (directly or via an interpreter)?"""
    program = os.path.realpath(config.program)
    try:
        exe, cmdline = process_command(pid)
    except PermissionError:
        return True  # cannot tell: do not call a live app dead
    except ProcessLookupError:
        return False
    candidates = [exe, *cmdline[:2]]
    return any(c and os.path.realpath(os.path.join(config.working_directory, c)) == program for c in candidates)


@hookimpl
def patrol_register_keepalives(register: Register[KeepAlive]) -> None:
    register(PidPatrol)
    register(PidApp)
