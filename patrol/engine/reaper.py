"""The one reaper, and pidfds for processes Patrol did not spawn.

* **One reaper.** Patrol is a child subreaper, so orphaned grandchildren are re-parented
  to it. Exactly one place reaps: on SIGCHLD, ``waitpid(-1, WNOHANG)`` in a loop, handing
  each status to whoever watches that pid. asyncio's own child watchers are never used
  (they would steal statuses from each other), so Patrol never calls
  ``asyncio.create_subprocess_*``; service commands go through
  :func:`patrol.engine.spawn.run_command`.
* **One watcher per pid.** A pid's exit status goes to the item that watches it; a
  second item asking to watch the same pid is refused (and logged), never swapped in.
* **pidfds for watching.** ``os.pidfd_open`` tells when a process that is *not* our child
  exits (an adopted daemon), without polling.
* **No look more than needed.** ``waitpid(-1)`` walks every child of Patrol in the
  kernel (0.14 ms at 4,900 children, 5 us at 500): an exit callback that reaps itself
  (to collect the statuses already there) ends the reap that called it, which would
  only walk every child once more to find nothing. And whoever polls (a stop waiting for
  its processes, every few ms, each of N apps at shutdown) looks only if a SIGCHLD came
  since the last look that went to the end: with no signal, no child has exited since,
  and N polls of N children each were a shutdown's quadratic part.
* **What an exit calls for comes before what it merely queued.** A restart an exit
  asks for (:meth:`Reaper.soon`) runs as soon as the exit callback that asked returned,
  before the reap looks for the next exit: not behind the loop's ready queue, where the
  exit's own state-file commit, log pipes' end of file and writer-thread hand-offs sit
  already, nor behind the look that finds no more exits (a walk of every child: ~0.9 ms
  at 5,000). Only the reap a SIGCHLD runs does this, at its own level: it is called by
  the loop alone, while a reap someone else calls (a keepalive reporting a death) has
  that caller on the stack, which must not see a new run start under it. A reap that
  restarted something leaves its next look to the loop's next turn, behind the work
  queued meanwhile: apps that crash as fast as they start cannot keep one reap going
  and starve the loop. At 5,000 apps this was ~2.5 ms of each respawn, and the ended
  run and the new one took a commit each; now the new run's pid goes into the same
  commit.
* **A slice at a time.** A look the loop or a poll runs handles at most
  :data:`REAP_SLICE` exits, and leaves the rest to the loop's next turn: when hundreds of
  children end at once, requests and pings get turns between the slices.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
from typing import Callable, Protocol, cast

import structlog

from patrol.engine.signals import SignalRouter
from patrol.plugin.keepalive import ExitStatus

log = structlog.get_logger("patrol.process")

PR_SET_CHILD_SUBREAPER = 36
#: children one look that the loop or a poll runs reaps before the loop gets a turn (the
#: rest at its next turn): the exits of 500 apps ending at once (a shutdown, a shared
#: dependency gone) were one callback of ~300 ms, every request and ping waiting behind it
REAP_SLICE = 32


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux >= 3.4)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except OSError:
        return False


class Watcher(Protocol):
    """An exit callback that knows whose it is."""

    @property
    def owner(self) -> str: ...

    def __call__(self, status: ExitStatus) -> None: ...


class _Owned:
    """A callback and its owner's name, for callbacks that do not name it themselves."""

    __slots__ = ("owner", "callback")

    def __init__(self, owner: str, callback: Callable[[ExitStatus], None]) -> None:
        self.owner, self.callback = owner, callback

    def __call__(self, status: ExitStatus) -> None:
        self.callback(status)


class Reaper:
    """Reaps every child on SIGCHLD and hands the status to the pid's watcher.

    ``reaped`` is told every reaped pid (its number may now name another process).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, signals: SignalRouter | None = None,
                 reaped: Callable[[int], None] | None = None,
                 before_reap: Callable[[], None] | None = None) -> None:
        self.loop = loop
        #: called before reaping: spawns whose watchers are still queued set them first
        #: (:mod:`patrol.engine.spawn_batch`), so no exit status finds nobody to take it
        self._before_reap = before_reap
        self.signals = signals or SignalRouter(loop)
        #: pid -> its watcher: a callback that names its owner (``.owner``), as an app's
        #: own watch does, kept as it is (a tuple of owner and callback per running app
        #: was 72 bytes); any other callback is kept with its owner in an :class:`_Owned`
        self._watchers: dict[int, Watcher] = {}
        self._reaped = reaped
        self._installed = False
        self._drains = 0  # looks that found nothing more, so far
        #: SIGCHLDs received when the last look that went to the end began (None: none yet)
        self._drained_at: int | None = None
        #: inside the reap a SIGCHLD runs: what exit callbacks ask for waits for them to return
        self._on_signal = False
        self._depth = 0  # reaps in progress (an exit callback may reap again)
        self._after: list[Callable[[], None]] = []

    def install(self) -> None:
        if not self._installed:
            self.signals.add(signal.SIGCHLD, self._signalled)
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
        if current is not None and current.owner != owner:
            log.warning("refused to watch a pid another item watches", pid=pid, owner=current.owner, asked_by=owner)
            return False
        named = getattr(callback, "owner", None) == owner  # it says whose it is: kept as it is
        self._watchers[pid] = cast(Watcher, callback) if named else _Owned(owner, callback)
        return True

    def watcher(self, pid: int) -> str | None:
        """Who watches ``pid`` (None: nobody)."""
        current = self._watchers.get(pid)
        return current.owner if current is not None else None

    def unwatch(self, pid: int) -> None:
        self._watchers.pop(pid, None)

    def reap_if_signalled(self) -> None:
        """Reap unless no SIGCHLD arrived since the last look that went to the end began
        (then no child has exited since). Without the handler installed: always looks.

        The count goes up in the signal handler itself, before the callback that reaps is
        even scheduled, so a poll right after an exit already sees it.
        """
        if self._installed and self._drained_at == self.signals.received.get(signal.SIGCHLD, 0):
            return
        self.reap(REAP_SLICE)

    def soon(self, job: Callable[[], None]) -> None:
        """Run ``job`` once the exit being reported is handled: inside the reap a SIGCHLD
        runs, when the exit callback returned (nothing but the loop and the reaper on the
        stack), before the next look; anywhere else at the loop's next turn (``call_soon``)."""
        if self._on_signal:
            self._after.append(job)
        else:
            self.loop.call_soon(job)

    def _signalled(self) -> None:
        """The SIGCHLD handler: reap, then do what the exits asked for (see :meth:`soon`)."""
        if self._on_signal:  # cannot happen (the loop calls handlers one at a time); stay plain
            self.reap()
            return
        self._on_signal = True
        try:
            self.reap(REAP_SLICE)
        finally:
            self._on_signal = False
            self._run_after()

    def _run_after(self) -> None:
        while self._after:
            job = self._after.pop(0)
            try:
                job()
            except Exception:  # noqa: BLE001 - one item's bug must not stop the others' jobs
                log.exception("work after an exit failed")

    def reap(self, limit: int | None = None) -> None:
        """Reap every child that has exited (always looks); with ``limit``, at most that
        many, and the next look at the loop's next turn (:data:`REAP_SLICE`)."""
        self._depth += 1
        try:
            self._reap(limit)
        finally:
            self._depth -= 1

    def _reap(self, limit: int | None) -> None:
        signalled = self.signals.received.get(signal.SIGCHLD, 0)  # before the look: later ones count
        if self._before_reap is not None:
            self._before_reap()
        reaped = 0
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                self._drains += 1
                self._drained_at = signalled
                return
            exit_status = ExitStatus.from_wait_status(status)
            if self._reaped is not None:
                self._reaped(pid)
            reaped += 1
            watcher = self._watchers.pop(pid, None)
            if watcher is None:
                log.debug("reaped", pid=pid, status=str(exit_status))
            else:
                drains = self._drains
                try:
                    watcher(exit_status)
                except Exception:  # noqa: BLE001 - the reaper must keep reaping
                    log.exception("exit callback failed", pid=pid)
                if self._on_signal and self._depth == 1 and self._after:
                    self._run_after()  # the restart it asked for, before the next look
                    if self._drains == drains:  # the next look at the loop's next turn: apps
                        self._look_next_turn()  # crashing at once cannot starve it
                    return
                if self._drains != drains:
                    return  # the callback reaped to the end itself: what exits later raises SIGCHLD
            if limit is not None and reaped >= limit and self._depth == 1:
                self._look_next_turn()  # the others at the loop's next turn (REAP_SLICE)
                return

    def _look_next_turn(self) -> None:
        """One more look at the loop's next turn, unless a SIGCHLD's is queued already:
        one queued reap at a time, however many children exit meanwhile."""
        if self._installed:
            self.signals.again(signal.SIGCHLD)
        else:
            self.loop.call_soon(self._signalled)


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
