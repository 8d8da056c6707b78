"""A connection's deadline: one timer that is moved on when it fires early.

Every answer sets a connection's deadline again and every complete request lifts it
(:class:`patrol.web.protocols.Connection`). A new asyncio timer each time, and a cancel
of the last one, was two timer handles per HTTP ping in the loop's heap; :class:`Deadline`
keeps one, and when it fires before the deadline (set again meanwhile) sets it for the
new time instead.
"""

from __future__ import annotations

import asyncio
from typing import Callable


class Deadline:
    """Calls ``expired`` once the deadline set by :meth:`arm` passed without a
    :meth:`disarm` or a later :meth:`arm` in between."""

    __slots__ = ("_loop", "_expired", "_due", "_timer", "_timer_at")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired
        self._due: float | None = None  # loop time
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def arm(self, timeout: float) -> None:
        """The deadline is ``timeout`` seconds from now."""
        self._due = due = self._loop.time() + timeout
        if self._timer is not None and due < self._timer_at:  # sooner than before (a reload shortened it)
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._timer = self._loop.call_at(due, self._fire)
            self._timer_at = due

    def disarm(self) -> None:
        """No deadline (until the next :meth:`arm`)."""
        self._due = None

    def cancel(self) -> None:
        """No deadline, and no timer left in the loop."""
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        due = self._due
        if due is None:
            return
        if due > self._timer_at:  # armed again since the timer was set: wait on
            self._timer = self._loop.call_at(due, self._fire)
            self._timer_at = due
            return
        self._due = None
        self._expired()
