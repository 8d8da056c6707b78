"""CPU share and resident memory of app processes, read from ``/proc``.

A CPU percentage needs two readings of the process's CPU time; the previous reading is
kept per pid (with the process start time, so a reused pid never mixes two processes).
Nothing is sampled in the background: readings happen only when a page or a live
update asks, so an idle Patrol does no work for the GUI.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: readings closer together than this give a noisy percentage: the last one is reused
MIN_INTERVAL = 0.5
#: readings of processes nobody asked about for this long are dropped
FORGET_AFTER = 300.0


@dataclass(frozen=True)
class Usage:
    cpu_percent: float | None  # of one core; None until there are two readings
    rss: int  # bytes


@dataclass
class _Reading:
    start: int
    ticks: int
    at: float
    percent: float | None


class ProcStats:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._readings: dict[int, _Reading] = {}

    def usage(self, pid: int) -> Usage | None:
        """The process's usage now, or None when it is gone or unreadable."""
        if pid <= 0:
            return None
        fields = _stat(pid)
        if fields is None:
            self._readings.pop(pid, None)
            return None
        ticks, start, rss_pages = fields
        now = self.clock()
        self._forget(now)
        last = self._readings.get(pid)
        if last is not None and last.start == start and now - last.at < MIN_INTERVAL:
            percent = last.percent
        else:
            percent = None
            if last is not None and last.start == start:
                percent = max(0.0, (ticks - last.ticks) / CLK_TCK / (now - last.at) * 100)
            self._readings[pid] = _Reading(start, ticks, now, percent)
        return Usage(percent, rss_pages * PAGE_SIZE)

    def _forget(self, now: float) -> None:
        stale = [pid for pid, r in self._readings.items() if now - r.at > FORGET_AFTER]
        for pid in stale:
            del self._readings[pid]


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(utime + stime ticks, start time ticks, rss pages) from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rfind(b")") + 2 :].split()
        # after the command: field n of proc(5) is at index n - 3
        return int(fields[11]) + int(fields[12]), int(fields[19]), int(fields[21])
    except (OSError, ValueError, IndexError):
        return None
