"""CPU share and resident memory of processes: the one sampler, for every reader.

The API (``cpu-percent``, ``rss-bytes``), the GUI and the metrics (``/metrics``) all ask
this one sampler, so the dashboard, ``/status/`` and Prometheus can never disagree about
the same process.

A CPU percentage needs two readings of the process's CPU time. Readings are kept per
process (pid *and* start time, so a reused pid never mixes two processes); the share is
the CPU time used between two readings at least :attr:`CpuSampler.window` seconds apart,
divided by the time between them. The first reading of a process reports the average
since it started. Asked again within the window, the sampler answers from its last
reading without reading ``/proc`` at all: a status page of 500 apps polled twice a
second costs no more than once a second. Nothing is sampled in the background: an idle
Patrol does no work for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from patrol.engine import procfs


# slots: one reading and one answer per process asked about (500 apps: 500 of each,
# kept from the first ``/status/`` on), each ~70 bytes smaller without a dict
@dataclass(frozen=True, slots=True)
class Usage:
    cpu_percent: float  # of one core
    rss: int  # resident memory, bytes
    cpu_seconds: float = 0.0  # CPU time the process used so far, all threads (a counter)


@dataclass(frozen=True, slots=True)
class Reading:
    start: int  # the process's start time: a reused pid is another process
    ticks: int  # CPU time so far
    at: float  # when read (monotonic)
    usage: Usage  # what was answered then


class CpuSampler:
    """Samples processes on demand (see the module docstring)."""

    #: readings closer together than this give a noisy percentage: the last one is reused
    window = 1.0
    #: readings of processes nobody asked about for this long are dropped
    forget_after = 300.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._readings: dict[int, Reading] = {}  # pid -> its last reading
        self._pruned = clock()

    def usage(self, pid: int) -> Usage | None:
        """The process's CPU share and memory now, or None when it is gone (or a zombie)."""
        reading = self.reading(pid)
        return reading.usage if reading is not None else None

    def reading(self, pid: int) -> Reading | None:
        """:meth:`usage` with the reading it comes from: the same object until the next
        reading, so a reader can keep what it made of it (``/status/`` its text)."""
        if pid <= 0:
            return None
        now = self.clock()
        last = self._readings.get(pid)
        if last is not None and now - last.at < self.window:
            return last  # no /proc read within the window
        info = procfs.stat(pid)
        if info is None or not info.alive:
            self._readings.pop(pid, None)
            return None
        if last is not None and last.start == info.start:
            percent = (info.cpu_ticks - last.ticks) / procfs.CLK_TCK / (now - last.at) * 100
        else:  # a first reading: the average since the process started
            age = procfs.uptime() - info.start / procfs.CLK_TCK
            percent = info.cpu_ticks / procfs.CLK_TCK / age * 100 if age > 0 else 0.0
        usage = Usage(round(max(percent, 0.0), 1), info.rss, info.cpu_ticks / procfs.CLK_TCK)
        reading = self._readings[pid] = Reading(info.start, info.cpu_ticks, now, usage)
        self._forget(now)
        return reading

    def _forget(self, now: float) -> None:
        if now - self._pruned < self.forget_after:
            return
        self._pruned = now
        for pid in [pid for pid, r in self._readings.items() if now - r.at > self.forget_after]:
            del self._readings[pid]
