"""The keepalive interface: how a plugin decides whether an app is alive.

Patrol always spawns an app itself; the keepalive method decides what "the app is
running" means afterwards and reports it to the app's runner through :class:`AppControl`:

* ``pid-patrol``: the spawned child *is* the app; its exit ends the instance.
* ``pid-app``: the app writes its own PID file and may fork away from the launcher.
* ``http`` / ``udp``: the app proves it is alive by pinging Patrol's API in time.

A method is a class with a ``name``. Patrol creates one instance per app and calls its
methods from the event loop (never from threads): keep them quick and non-blocking.
Timers and process watches are taken through :class:`AppControl`, which cancels them
when the instance closes, so a method never leaks a callback.

A method that raises (in any of its methods, timers or watch callbacks) cannot wedge
its app: the exception is logged with the plugin's name and traceback, the instance's
processes are stopped, and the app takes its normal failure path (backoff, and the
reason in ``last-reason``).

Writing one (a complete plugin)::

    from patrol import KeepAlive, hookimpl

    class Always(KeepAlive):
        name = "always"
        def spawned(self, pid):
            self.app.alive(pid)

    @hookimpl
    def patrol_register_keepalives(register):
        register(Always)
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Protocol

from patrol.plugin.model import AppConfig, Option, PatrolConfig


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended, from ``waitpid``.

    ``code`` is the exit code of a normal exit; ``signal`` the number of the signal
    that killed it. ``compat_code`` is what the original Patrol recorded (255 for a
    death by signal).
    """

    code: int | None = None
    signal: int | None = None

    @classmethod
    def from_wait_status(cls, status: int) -> "ExitStatus":
        import os

        if os.WIFSIGNALED(status):
            return cls(signal=os.WTERMSIG(status))
        return cls(code=os.waitstatus_to_exitcode(status))

    @property
    def compat_code(self) -> int:
        return 255 if self.signal is not None else (self.code or 0) & 0xFF

    def __str__(self) -> str:
        if self.signal is not None:
            import signal as _signal

            try:
                return f"killed by {_signal.Signals(self.signal).name}"
            except ValueError:
                return f"killed by signal {self.signal}"
        return f"exit code {self.code}"


class Cancellable(Protocol):
    def cancel(self) -> Any: ...


class AppControl(Protocol):
    """What a keepalive method may see and do; implemented by the app's runner."""

    @property
    def config(self) -> AppConfig:
        """The app's configuration (its options in ``config.options``)."""

    @property
    def patrol_config(self) -> PatrolConfig:
        """The running Patrol's configuration (a reload may replace it)."""

    @property
    def pid(self) -> int:
        """The pid of the running instance, 0 when unknown or not running."""

    @property
    def running(self) -> bool:
        """True while an instance is started."""

    @property
    def launcher_pid(self) -> int:
        """Pid of the process Patrol spawned last (0 if none is alive)."""

    @property
    def disabled(self) -> bool:
        """The app's disabled flag as it is now (toggles included)."""

    def owns(self, pid: int) -> bool:
        """Is ``pid`` proven to be this app's process?

        True when Patrol spawned it for this app, it descends from such a process, it is
        in a session Patrol created for the app, or its environment carries
        ``PATROL_ID=<this app's id>`` (see :mod:`patrol.engine.ownership`). Only such processes
        are ever signalled or reaped for the app; pid 1, Patrol and its ancestors never.
        """

    def now(self) -> float:
        """Monotonic clock of the supervisor (seconds); tests may substitute it."""

    def alive(self, pid: int, *, tentative: bool = False, trusted: bool = False, pinged: bool = False) -> None:
        """Report the app alive as ``pid``.

        Starts an instance if none is running; refreshes ``lastseen`` if ``pid`` is the
        known one; closes the old instance and starts a new one if the pid changed. A
        ``tentative`` pid (the launcher of an app whose real pid is not known yet) is
        replaced by the next reported pid without closing the instance. ``trusted``
        is accepted for compatibility and no longer decides anything: whether Patrol may
        signal or reap ``pid`` is proven by Patrol itself (:meth:`owns`), whatever the
        method says. Pid 1, Patrol and its ancestors are refused unless ``pinged`` (a
        pinged pid is only recorded). ``pinged`` selects the ping events.
        """

    def dead(self, reason: str, status: ExitStatus | None = None) -> None:
        """Report the instance gone. Closes it into history; Patrol restarts as policy says."""

    def fault(self, message: str | None) -> None:
        """Report a problem that does not end the instance (None: it went away).

        Shown in the app's status (``fault``) and logged once per occurrence.
        """

    def ready(self, ready: bool, message: str = "") -> None:
        """(plugin API 2.1) Report whether the running instance is ready (serves).

        Counts only for methods with ``reports_readiness``: their app is not ready until
        this says so. ``message`` is shown beside the state.
        """

    def status(self, text: str | None) -> None:
        """(plugin API 2.1) The app's own one-line status (sd_notify's ``STATUS=``),
        shown as ``status-text`` in the API, the GUI and ``patrol status``; None clears it."""

    def fail(self, reason: str) -> None:
        """(plugin API 2.1) End the running instance as a failure: its processes get the
        stop signal, SIGKILL after ``stop-timeout``, the run closes with ``reason`` and
        the app is restarted as after a crash (backoff, ``start-limit``)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """A timer owned by the current instance, cancelled when it closes."""

    def watch_pid(self, pid: int, callback: Callable[[], None]) -> Cancellable | None:
        """Call ``callback`` once when ``pid`` exits (pidfd; works on non-children).

        Returns None when the process is already gone or cannot be watched (then the
        tick's :meth:`KeepAlive.check` is the fallback).
        """

    @property
    def log(self) -> Any:
        """A structlog logger bound to this app."""


class KeepAlive(ABC):
    """Base class of keepalive methods. Override what your method needs.

    Class attributes:

    ``name``
        What users write in ``"keepalive"``.
    ``aliases``
        Other accepted values, e.g. the original's number (``(1,)``).
    ``options``
        Extra per-app config keys this method understands (:class:`Option`).
    ``requires_pid_path``
        ``pid-path`` is mandatory for apps using this method.
    ``ping_transport``
        Name of the transport whose pings keep the app alive (``"http"``, ``"udp"``),
        or None if the method is not ping-based. Pings over any other transport are
        refused with ``Invalid Ping Endpoint``; the config must advertise a listener
        (``listen-http`` / ``listen-udp``) for it.
    ``reports_readiness``
        (plugin API 2.1) The method tells when the app is ready
        (:meth:`AppControl.ready`): until then a running app is not ``ready``.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[int | str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    requires_pid_path: ClassVar[bool] = False
    ping_transport: ClassVar[str | None] = None
    reports_readiness: ClassVar[bool] = False

    def __init__(self, app: AppControl) -> None:
        self.app = app

    @classmethod
    def validate(cls, app: AppConfig) -> list[tuple[str, str]]:
        """Extra checks on a loaded app: ``[(key, message), ...]``; empty when fine."""
        return []

    def startup_grace(self) -> float:
        """Seconds after Patrol starts during which a not-running app is not spawned.

        Gives apps that outlived a Patrol restart the chance to be adopted (to ping,
        for example) instead of being started a second time.
        """
        return 0.0

    def adopt(self) -> None:
        """Look for an instance that is already running (Patrol just started).

        When the state file restored a running instance (its pid and process start time
        still match), the app is running already; the default watches that pid, so its
        exit ends the instance. Methods with their own evidence (a pid file, pings)
        override this.
        """
        if self.app.running and self.app.pid:
            pid = self.app.pid
            if self.app.watch_pid(pid, lambda: self.app.dead("exited")) is None:
                self.app.dead("exited")

    def environment(self) -> Mapping[str, str]:
        """(plugin API 2.1) Variables to add to the environment of the next spawn.

        Called just before each spawn (e.g. ``NOTIFY_SOCKET``); they win over the
        app's ``env``.
        """
        return {}

    def spawned(self, pid: int) -> None:
        """Patrol has just spawned the app's program as ``pid``."""

    def child_exited(self, pid: int, status: ExitStatus) -> None:
        """A process Patrol spawned for this app (``pid``) has exited and was reaped.

        The default ends the instance when its own pid exits, and ends a launch when
        the launcher exits before the app was ever reported alive.
        """
        if self.app.running and pid == self.app.pid:
            self.app.dead("exited", status)
        elif not self.app.running and pid == self.app.launcher_pid:
            self.app.dead("exited before it was seen running", status)

    def check(self) -> None:
        """Reconcile on each tick: a fallback for anything events may have missed."""

    def pinged(self, pid: int) -> None:
        """A ping arrived over ``ping_transport`` (``pid`` 0 when the ping had none)."""

    def closed(self) -> None:
        """The instance was closed; forget per-instance bookkeeping."""
