"""The one reader of ``/proc``: processes as the kernel describes them.

Every question Patrol asks about a process (is it alive, who is its parent, which
group and session, when did it start, how much CPU and memory, what is in its
environment) is answered here, from bounded, non-blocking reads of kernel-made files
(:func:`patrol.util.safefile.read_bounded`), so no caller parses ``/proc`` its own way.

Why not psutil: on the hot path (ownership checks on every exit, ping and sweep, group
scans while stopping) one :func:`stat` costs 11.6 us here and 33-94 us through
``psutil.Process`` (2 cores, Python 3.11, psutil 7.2: one call of ``status()``, or a
``oneshot`` of start time, status, parent, CPU and memory); a scan of every process
0.8 ms here, 3.3 ms with ``psutil.process_iter`` (78 processes).

A process's identity is its pid *and* its start time (:attr:`Proc.start`): pids are
reused, the pair never is.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Iterator

from patrol.util.safefile import read_bounded

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: pid_t is a signed 32-bit integer: a larger number names no process
PID_T_MAX = 2**31 - 1


@dataclass(frozen=True)
class Proc:
    """One process as ``/proc/PID/stat`` describes it."""

    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks since boot: with the pid, it names one process for good
    cpu_ticks: int = 0  # user + system time, all threads
    rss_pages: int = 0
    vsize: int = 0  # virtual memory, bytes

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")

    @property
    def rss(self) -> int:
        """Resident memory in bytes."""
        return self.rss_pages * PAGE_SIZE

    @property
    def started_at(self) -> float:
        """When it started, in wall-clock seconds (``time.time()``)."""
        return boot_time() + self.start / CLK_TCK


def stat(pid: int) -> Proc | None:
    """The process ``pid`` (zombies included), or None when there is none."""
    if not 0 < pid <= PID_T_MAX:
        return None
    data = read_bounded(f"/proc/{pid}/stat", 4096)
    if not data:
        return None
    # the command name may contain spaces and parentheses: split after the last ')';
    # then field n of proc(5) is at index n - 3
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return Proc(pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]),
                    int(fields[11]) + int(fields[12]), int(fields[21]), int(fields[20]))
    except (IndexError, ValueError):
        return None


def state(pid: int) -> str | None:
    """The process's state letter (``R``, ``S``, ``Z``, ...), None when there is none."""
    info = stat(pid)
    return info.state if info is not None else None


def start_time(pid: int) -> int | None:
    """The process start time in clock ticks since boot (identity against pid reuse)."""
    info = stat(pid)
    return info.start if info is not None else None


def environ(pid: int, limit: int) -> bytes | None:
    """At most ``limit`` bytes of the process's environment (NUL-separated), or None."""
    return read_bounded(f"/proc/{pid}/environ", limit)


def status_field(pid: int, name: bytes) -> int | None:
    """The first number of a ``/proc/PID/status`` line (``Tgid:``, ``Uid:``), or None."""
    data = read_bounded(f"/proc/{pid}/status", 8192) or b""
    for line in data.splitlines():
        if line.startswith(name):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def tgid(pid: int) -> int:
    """The process a thread id belongs to (kill() on a thread id signals its process)."""
    found = status_field(pid, b"Tgid:")
    return pid if found is None else found


def real_uid(pid: int) -> int | None:
    """Who started the process (its real uid; a setuid program keeps its caller's)."""
    return status_field(pid, b"Uid:")


def command(pid: int) -> tuple[str, list[str]]:
    """The process's executable and command line (for ``pid-verify``).

    Raises ``PermissionError`` when they may not be read (another user's process),
    ``ProcessLookupError`` when the process is gone.
    """
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    raw = read_bounded(f"/proc/{pid}/cmdline", 1 << 20)
    if raw is None:
        raise ProcessLookupError(pid)
    args = raw.split(b"\0")
    if args and not args[-1]:
        args.pop()  # the NUL that ends the last argument
    return exe, [os.fsdecode(arg) for arg in args]


def open_descriptors() -> int | None:
    """How many file descriptors Patrol has open now (None when ``/proc`` cannot say)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def pids() -> Iterator[int]:
    """Every process id now, in no order."""
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                yield int(entry.name)


def children() -> set[int]:
    """Patrol's direct children, orphans re-parented to it included.

    From ``/proc/self/task/*/children`` (a few small files, cheap enough for every tick);
    if the kernel lacks them, by a scan of ``/proc``.
    """
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        tasks = []
    found: set[int] = set()
    readable = False
    for tid in tasks:
        data = read_bounded(f"/proc/self/task/{tid}/children", 1 << 20)
        if data is None:
            continue
        readable = True
        found.update(int(p) for p in data.split() if p.isdigit())
    if readable:
        return found
    me = os.getpid()
    for pid in pids():
        info = stat(pid)
        if info is not None and info.ppid == me:
            found.add(info.pid)
    return found


def now_ticks() -> int:
    """The current time in the unit of a process's start time (clock ticks since boot)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * CLK_TCK)


def uptime() -> float:
    """Seconds since boot, as the start times count them."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


_boot: list[float] = []


def boot_time() -> float:
    """When the machine booted, in wall-clock seconds (``btime`` of ``/proc/stat``)."""
    if not _boot:
        data = read_bounded("/proc/stat", 1 << 16) or b""
        for line in data.splitlines():
            if line.startswith(b"btime "):
                _boot.append(float(line.split()[1]))
                break
        else:
            _boot.append(time.time() - uptime())
    return _boot[0]
