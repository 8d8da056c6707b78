"""Signals routed to callbacks on the event loop, without ever losing one.

asyncio's ``add_signal_handler`` learns about a signal from a byte written to a socket
pair; in a burst that socket fills up and later signals are dropped (measured: a burst
of 1000 signals lost every SIGHUP, and could as well lose SIGTERM or SIGCHLD). Here the
Python-level handler runs for every signal the kernel delivers (the interpreter keeps a
flag per signal, which cannot overflow) and schedules the callback on the loop, once: a
signal whose callback is queued already queues nothing more, so a burst of one signal is
one call, which is what every callback here wants. (Each SIGCHLD used to queue a reap of
its own: with apps crashing as fast as they were restarted, the loop's ready queue grew
by one reap per exit, each restart a spawn, and one turn of the loop ran them all, for
seconds under load, with no turn left to answer ``/status/``.)

Each signal's arrivals are counted (:attr:`SignalRouter.received`), at once in the
handler, before its callback runs: whoever polls can tell whether anything happened since
it last looked without a system call (the reaper: no SIGCHLD since its last complete
look, no child has exited since then either).

The kernel may hand a signal to any thread of Patrol's, not only the loop's: a child's
SIGCHLD goes to the thread that started it, the spawn thread
(:mod:`patrol.engine.spawn_thread`). There the C handler only sets the interpreter's
flag, and the loop, asleep in ``epoll_wait`` on the main thread, would run the Python
handler at its next timer (measured: 20 s later). So the router also sets the signal
wakeup descriptor, a socket pair whose read end the loop watches: whichever thread the
signal lands on writes a byte to it, the loop wakes up, and the handler runs at once.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from types import FrameType
from typing import Any, Callable


#: the wakeup descriptor the newest router set (-1: none): what the spawn thread keeps
_wakeup_set = -1
#: how many wakeup descriptors routers have set: a number may be reused for a new socket
_wakeup_generation = 0


def wakeup_fd() -> tuple[int, int]:
    """The signal wakeup descriptor a :class:`SignalRouter` set and still holds (-1:
    none), and which one it is (a descriptor number can come back for another socket)."""
    return _wakeup_set, _wakeup_generation


class SignalRouter:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._previous: dict[int, Any] = {}
        #: signal -> how many times its handler ran (several signals pending at once count once)
        self.received: dict[int, int] = {}
        #: signals whose callback is queued on the loop and has not started yet
        self._queued: set[int] = set()
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._previous_wakeup = -1

    def add(self, sig: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop when ``sig`` arrives (main thread only)."""
        if self._wakeup is None:
            self._wake_on_signals()
        if sig not in self._previous:
            self._previous[sig] = signal.signal(sig, self._deliver)
        self._callbacks[sig] = callback

    def remove(self, sig: int) -> None:
        if sig in self._previous:
            signal.signal(sig, self._previous.pop(sig))
            self._callbacks.pop(sig, None)
        if not self._previous:
            self._release_wakeup()  # nothing routed any more: the descriptor goes back

    def close(self) -> None:
        for sig in list(self._previous):
            self.remove(sig)
        self._release_wakeup()

    def _release_wakeup(self) -> None:
        global _wakeup_set, _wakeup_generation
        if self._wakeup is not None:
            reader, writer = self._wakeup
            holder = signal.set_wakeup_fd(-1)
            back = self._previous_wakeup if holder == writer.fileno() else holder  # someone else's since: theirs stays
            try:
                signal.set_wakeup_fd(back)
            except (OSError, ValueError):
                pass  # closed meanwhile by whoever set it: none now, rather than a stranger's descriptor
            if _wakeup_set == writer.fileno():
                _wakeup_set, _wakeup_generation = self._previous_wakeup, _wakeup_generation + 1
            if not self.loop.is_closed():
                self.loop.remove_reader(reader.fileno())
            reader.close()
            writer.close()
            self._wakeup = None

    def _wake_on_signals(self) -> None:
        """Make a signal handled on any thread wake the loop (see the module docstring)."""
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        # a full buffer means a wakeup is pending already: nothing is lost (the handler's flag stays set)
        global _wakeup_set, _wakeup_generation
        self._previous_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._wakeup = (reader, writer)
        _wakeup_set = writer.fileno()
        _wakeup_generation += 1
        self.loop.add_reader(reader.fileno(), _drain, reader)

    def again(self, sig: int) -> None:
        """Queue ``sig``'s callback as an arrival would, without counting one: a
        callback that left work for the loop's next turn (unless one is queued already)."""
        self._queue(sig)

    def _deliver(self, signum: int, frame: FrameType | None) -> None:
        self.received[signum] = self.received.get(signum, 0) + 1
        self._queue(signum)

    def _queue(self, signum: int) -> None:
        # Python runs signal handlers on the main thread only, between two bytecodes of
        # whatever it runs there (the loop's turn included): the set needs no lock.
        if signum in self._queued or signum not in self._callbacks or self.loop.is_closed():
            return
        self._queued.add(signum)
        self.loop.call_soon_threadsafe(self._run, signum)

    def _run(self, signum: int) -> None:
        self._queued.discard(signum)  # first: a signal from now on queues another call
        callback = self._callbacks.get(signum)
        if callback is not None:
            callback()


def _drain(reader: socket.socket) -> None:
    """The wakeup bytes have done their work by waking the loop: throw them away."""
    try:
        while reader.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass
