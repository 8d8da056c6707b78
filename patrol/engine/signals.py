"""Signals routed to callbacks on the event loop, without ever losing one.

asyncio's ``add_signal_handler`` learns about a signal from a byte written to a socket
pair; in a burst that socket fills up and later signals are dropped (measured: a burst
of 1000 signals lost every SIGHUP, and could as well lose SIGTERM or SIGCHLD). Here the
Python-level handler runs for every signal the kernel delivers (the interpreter keeps a
flag per signal, which cannot overflow) and schedules the callback on the loop. Bursts of
one signal collapse into fewer calls, which is what every callback here wants.

Each signal's arrivals are counted (:attr:`SignalRouter.received`), at once in the
handler, before its callback runs: whoever polls can tell whether anything happened since
it last looked without a system call (the reaper: no SIGCHLD since its last complete
look, no child has exited since then either).
"""

from __future__ import annotations

import asyncio
import signal
from types import FrameType
from typing import Any, Callable


class SignalRouter:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._previous: dict[int, Any] = {}
        #: signal -> how many times its handler ran (several signals pending at once count once)
        self.received: dict[int, int] = {}

    def add(self, sig: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop when ``sig`` arrives (main thread only)."""
        if sig not in self._previous:
            self._previous[sig] = signal.signal(sig, self._deliver)
        self._callbacks[sig] = callback

    def remove(self, sig: int) -> None:
        if sig in self._previous:
            signal.signal(sig, self._previous.pop(sig))
            self._callbacks.pop(sig, None)

    def close(self) -> None:
        for sig in list(self._previous):
            self.remove(sig)

    def _deliver(self, signum: int, frame: FrameType | None) -> None:
        self.received[signum] = self.received.get(signum, 0) + 1
        callback = self._callbacks.get(signum)
        if callback is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(callback)
