"""Starting programs: apps (each in a new session) and service commands.

Every child Patrol starts goes through :func:`spawn`, and its exit status only ever
arrives through the one reaper (:mod:`patrol.engine.reaper`): the returned ``Popen`` is
never waited on. Service commands run through :func:`run_command`, which never blocks
the loop and kills the command's whole group when it hangs.

Who and with what an app runs (:class:`ProcessSettings`: ``user``, ``limits``,
``nice``, ``umask``, ``env-file``) is applied here too, for every process started for
an app: ``umask`` by ``subprocess`` itself (it keeps vfork), the rest by the launcher
(:mod:`patrol.engine.launcher`) in the child before the program's ``exec``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping, Sequence

from patrol.engine import descriptors, spawn_thread
from patrol.engine.reaper import Reaper
from patrol.engine.signalling import signal_group
from patrol.plugin.keepalive import ExitStatus
from patrol.plugin.model import LIMIT_NAMES, AppConfig, RunAs

#: the launcher, run as a script by Patrol's own Python (``-I -S``: nothing from the
#: environment or site-packages; it imports the standard library only)
#: (a path: the daemon imports the module only to build a launcher's arguments)
_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")


#: the variables Patrol sets in an app's environment (nothing may change them)
OWN_VARIABLES = ("PATROL_ID", "PATROL_KEEPALIVE", "PATROL_PID", "PATROL_HTTP", "PATROL_UDP", "PATROL_INSTANCE",
                 "PATROL_INSTANCES")


@dataclass(frozen=True)
class ProcessSettings:
    """Who and with what an app's processes run: from its config, for every process
    Patrol starts for it (its program, and anything else run on its behalf)."""

    run_as: RunAs | None = None
    umask: int | None = None
    nice: int | None = None
    limits: Mapping[str, tuple[int, int]] = field(default_factory=lambda: MappingProxyType({}))
    #: read by the launcher, as the app's user ("" = none, or read by Patrol already)
    env_file: str = ""
    #: variables the env file must not change (``env`` and Patrol's own win over it)
    keep: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: AppConfig, keep: Sequence[str] = ()) -> "ProcessSettings":
        settings = cls(config.run_as, config.umask, config.nice, config.limits)
        if settings.launcher:
            return cls(config.run_as, config.umask, config.nice, config.limits, config.env_file_path, tuple(keep))
        return settings

    @classmethod
    def of_app(cls, config: AppConfig, extra: Sequence[str] = ()) -> "ProcessSettings":
        """An app's settings, with the variables its env file must not change: ``env``'s,
        Patrol's own and ``extra`` (what its keepalive adds)."""
        return cls.of(config, keep=[*(e.partition("=")[0] for e in config.env), *OWN_VARIABLES, *extra])

    @property
    def launcher(self) -> bool:
        """Must the program be started through the launcher (anything but ``umask``)?"""
        return self.run_as is not None or bool(self.limits) or self.nice is not None


class LaunchStatus:
    """The pipe the launcher reports a failed step on; end of file means the program runs."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.message = ""
        self._loop: asyncio.AbstractEventLoop | None = None

    def spawned(self, loop: asyncio.AbstractEventLoop) -> None:
        """The launcher runs: drop Patrol's write end, close the pipe at end of file."""
        self._close_write()
        self._loop = loop
        loop.add_reader(self.read_fd, self.read)

    def read(self) -> str:
        """What the launcher reported so far ("" = nothing: it ran the program, or runs)."""
        while self.read_fd >= 0:
            try:
                data = os.read(self.read_fd, 4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                self.close()
                break
            self.message += data.decode(errors="replace")
        return self.message

    def close(self) -> None:
        self._close_write()
        if self.read_fd >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self.read_fd)
            os.close(self.read_fd)
            self.read_fd = -1

    def _close_write(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1


class Child(subprocess.Popen[bytes]):
    """A started program whose exit status belongs to the reaper.

    Patrol keeps only the pid of an app's process, not this object (~450 bytes and a
    lock per app while it runs). A plain ``Popen`` dropped before its ``returncode`` is
    set puts itself on ``subprocess``'s list of children to poll, and the next ``Popen``
    anywhere in Patrol would then ``waitpid`` that pid and take its exit status from
    the reaper; a ``Child`` never waits on, polls or reaps its process.
    """

    def __del__(self) -> None:
        pass


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    stdout: int | None,
    stderr: int | None,
    stdin: int | None = subprocess.DEVNULL,
    settings: ProcessSettings | None = None,
    status: LaunchStatus | None = None,
) -> Child:
    """Start a program in a new session (its own process group) and return at once.

    The caller owns the exit status through the :class:`Reaper`; the returned Popen is
    never waited on, and may be dropped at once (see :class:`Child`). The child gets the soft descriptor limit Patrol was started with
    (:func:`patrol.engine.descriptors.hand_back`), not the one Patrol raised for itself,
    unless ``settings`` say otherwise. With ``settings`` that need the launcher, it is
    what starts (same pid); a step it fails is reported on ``status`` (which the caller
    then reads, see :class:`LaunchStatus`), and it exits 127.

    The ``Popen`` itself runs in the spawn thread where there is one
    (:mod:`patrol.engine.spawn_thread`: its small descriptor table keeps a spawn as
    cheap with 5,000 apps as with one); ``stdin``, ``stdout``, ``stderr`` (``None``:
    Patrol's own) and the status pipe are handed to it for the spawn.
    """
    settings = settings or ProcessSettings()
    if settings.launcher and status is None:
        raise ValueError("a launch through the launcher needs a LaunchStatus")
    streams = [_own(stdin, 0), _own(stdout, 1), _own(stderr, 2)]
    spawner = spawn_thread.current() if subprocess.PIPE not in streams else None
    proc: Child | None = None
    if spawner is not None:
        handed = [fd for fd in streams if fd >= 0]
        if status is not None:
            handed.append(status.write_fd)

        def start(copies: list[int]) -> Child:
            mine = iter(copies)
            local = [next(mine) if fd >= 0 else fd for fd in streams]
            return _start(argv, env, cwd, local, settings, next(mine) if status is not None else -1)

        try:
            proc = spawner.run(start, handed)
        except spawn_thread.SpawnThreadGone:
            proc = None  # it did not run: start the child here
    if proc is None:
        proc = _start(argv, env, cwd, streams, settings, status.write_fd if status is not None else -1)
    if not settings.launcher:
        descriptors.hand_back(proc.pid)
    return proc


def _own(fd: int | None, inherited: int) -> int:
    """A child's standard stream: ``None`` is Patrol's own (descriptor ``inherited``)."""
    return inherited if fd is None else fd


def _start(argv: Sequence[str], env: Mapping[str, str], cwd: str, streams: list[int],
           settings: ProcessSettings, status_fd: int) -> Child:
    """The ``Popen`` of :func:`spawn`, with descriptors of the calling thread's table."""
    stdin, stdout, stderr = streams
    umask = -1 if settings.umask is None else settings.umask
    if not settings.launcher:
        return Child(list(argv), executable=argv[0], env=dict(env), cwd=cwd, stdin=stdin, stdout=stdout,
                     stderr=stderr, start_new_session=True, close_fds=True, umask=umask)
    boot = [sys.executable, "-I", "-S", _LAUNCHER, *_launcher_arguments(settings, status_fd), *argv]
    return Child(boot, env=dict(env), cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr,
                 start_new_session=True, close_fds=True, pass_fds=(status_fd,), umask=umask)


def _launcher_arguments(settings: ProcessSettings, status_fd: int) -> list[str]:
    limits = {LIMIT_NAMES[name]: pair for name, pair in settings.limits.items()}
    if "RLIMIT_NOFILE" not in limits and (inherited := descriptors.inherited()) is not None:
        limits["RLIMIT_NOFILE"] = inherited  # what Patrol was started with, as for any child
    from patrol.engine import launcher

    run_as = settings.run_as
    return launcher.arguments(status_fd, limits=limits, nice=settings.nice, env_file=settings.env_file,
                              keep=settings.keep, uid=run_as.uid if run_as else None,
                              gid=run_as.gid if run_as else None, groups=run_as.groups if run_as else ())


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
    cwd: str = "/",
    settings: ProcessSettings | None = None,
) -> CommandResult:
    """Run a command without blocking the loop; kill its whole group on timeout (or
    when the caller is cancelled: nothing of it outlives the call).

    Output (stdout and stderr together) is captured up to ``max_output`` bytes; the
    rest is counted and dropped so a chatty command cannot exhaust memory.
    ``settings``: who and with what it runs (an app's, for a program run on its behalf);
    a step the launcher could not take is the result's ``error``.
    """
    loop = asyncio.get_running_loop()
    launch = LaunchStatus() if settings is not None and settings.launcher else None
    read_fd, write_fd = os.pipe()
    if env is None:  # Patrol's own environment, without an app marker it may have inherited
        env = {k: v for k, v in os.environ.items() if k != "PATROL_ID"}
    try:
        proc = spawn(argv, env=env, cwd=cwd, stdout=write_fd, stderr=write_fd, settings=settings, status=launch)
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        if launch is not None:
            launch.close()
        return CommandResult(list(argv), None, error=f"{exc.strerror or exc}")
    os.close(write_fd)
    if launch is not None:
        launch.spawned(loop)
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
    error = ""
    if launch is not None:
        error = launch.read()  # written before the launcher exited, if it failed
        launch.close()
    return CommandResult(list(argv), exited.result(), output, timed_out, error)


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
