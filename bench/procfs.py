"""What the kernel says about a process: CPU, memory, wake-ups, liveness, exit.

Every figure of the benchmark comes from here or from the children's own start lines,
never from a timer inside a supervisor, so the three daemons are measured the same way.
This is a copy of the kernel's /proc parsing (patrol/engine/procfs.py) on purpose: the
benchmark must not import the Patrol it measures.
"""

from __future__ import annotations

import os
import select
import signal
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may contain spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    return data[data.rfind(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process, all threads (utime + stime, in clock ticks)."""
    fields = _stat_fields(pid)
    if fields is None:
        raise ProcessLookupError(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of the process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ProcessLookupError(pid)


def wakeups(pid: int) -> int:
    """Context switches of all threads of the process: how often it woke up.

    A supervisor that polls wakes up on every poll even when it does no work, so this
    shows polling more sharply than CPU time, whose resolution is one clock tick.
    """
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        raise ProcessLookupError(pid) from None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
        except OSError:
            continue  # a thread ended while we looked
    return total


def machine_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat.

    Two readings give the share of the machine that was busy in between, whoever was
    busy: a benchmark on a shared machine says so instead of reporting slow figures.
    """
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def busy_share(window: float) -> float:
    """Share of all CPUs that was busy over the next ``window`` seconds (0..1)."""
    busy, total = machine_busy()
    time.sleep(window)  # the sampling window
    busy2, total2 = machine_busy()
    return (busy2 - busy) / max(1, total2 - total)


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def pids_with_marker(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (the benchmark's own)."""
    needle = marker.encode()
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle not in f.read():
                    continue
        except OSError:
            continue
        if alive(int(entry)):
            found.append(int(entry))
    return found


def kill(pids: list[int] | set[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def reap(pids: set[int] | list[int]) -> None:
    """Collect the exit status of those of ``pids`` that are our exited children.

    The benchmark is a child subreaper, so a daemon that forked itself away (pm2) and
    the children a SIGKILLed daemon leaves behind become its children; each is waited
    for by pid (never ``waitpid(-1)``, which could take the status a ``Popen`` waits for).
    """
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue  # not our child, or already collected


def become_subreaper() -> bool:
    """Make orphans of our descendants our children (``PR_SET_CHILD_SUBREAPER``).

    Without it a daemon that forks itself away is reparented to PID 1, and the benchmark
    could not learn its exit status; on a machine whose PID 1 does not reap, every child
    a SIGKILLed daemon leaves behind would also stay a zombie for good.
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped on the UDP socket bound to ``port`` (receive buffer full)."""
    total = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if int(cols[1].rsplit(":", 1)[1], 16) == port:
                        total += int(cols[-1])
        except OSError:
            continue
    return total


class ExitWatch:
    """The exact moment a child of ours exits, through a pidfd (no polling).

    ``subprocess.Popen.wait(timeout)`` sleeps in steps of up to 50 ms, which would be
    most of what Patrol's shutdown is measured to take.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fd = os.pidfd_open(pid)

    def wait(self, timeout: float) -> float | None:
        """Wall time at which the process exited, or None if it still runs after ``timeout``."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return None
        return time.time()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
