"""One daemon, one workload, one series of measurements, and nothing left behind.

A :class:`Run` launches a daemon in its own session with the workload's marker in its
environment; leaving the ``with`` block kills the daemon's process group and every
process carrying the marker, by pid, and checks that none is left. The two session
kinds measure what the issue's table lists:

* :func:`main_session` (N apps): cold start, idle CPU and wake-ups, RSS, full status
  queries, graceful shutdown and the children it leaves.
* :func:`respawn_session` (N apps): SIGKILL of children -> their replacements' own
  starts, then SIGKILL of the daemon and the children that outlive it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procfs
from .daemons import Daemon

QUERY = Path(__file__).with_name("query.py")
START_TIMEOUT = 120.0
#: How long after the daemon's SIGKILL the surviving children are counted.
ORPHAN_GRACE = 1.0


class BenchError(RuntimeError):
    """A daemon did not do what the workload needs (the run is invalid, not slow)."""


@dataclass
class Settings:
    idle_seconds: float
    status_queries: int
    respawn_samples: int
    kill_jitter: float
    query_python: str


class Run:
    """A running daemon (context manager): launch, query, and clean up by pid."""

    def __init__(self, daemon: Daemon, settings: Settings) -> None:
        self.daemon = daemon
        self.work = daemon.work
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit: procfs.ExitWatch | None = None
        self.launched_at = 0.0
        self._busy = (0, 0)
        #: share of all CPUs busy (anyone) while the session ran; set on exit
        self.machine_busy = 0.0
        #: the daemon's exit status after a graceful shutdown
        self.exit_code: int | None = None

    def __enter__(self) -> Run:
        self._busy = procfs.machine_busy()
        with open(self.work.dir / "daemon.log", "wb") as log:
            self.launched_at = time.time()
            self.proc = subprocess.Popen(
                self.daemon.argv(), cwd=self.work.dir, env=self.work.env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.exit = procfs.ExitWatch(self.proc.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        busy, total = procfs.machine_busy()
        self.machine_busy = (busy - self._busy[0]) / max(1, total - self._busy[1])
        leftovers = self.cleanup()
        if leftovers and exc[0] is None:
            raise BenchError(f"{self.daemon.name}: could not kill leftover processes {leftovers}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- observations ----------------------------------------------------------------

    def fail(self, what: str) -> BenchError:
        log = (self.work.dir / "daemon.log").read_text(errors="replace")[-3000:]
        return BenchError(f"{self.daemon.label}: {what} (workload in {self.work.dir}); daemon log tail:\n{log}")

    def wait_started(self, n: int) -> float:
        """Seconds from launch until the last of ``n`` apps logged its first start."""
        if not self.work.log.wait(lambda log: log.started() >= n or self.proc.poll() is not None, START_TIMEOUT):
            raise self.fail(f"only {self.work.log.started()} of {n} apps started within {START_TIMEOUT} s")
        if self.work.log.started() < n:
            raise self.fail(f"exited with {self.proc.returncode} after {self.work.log.started()} of {n} starts")
        last = max((runs[0].at for runs in self.work.log.starts.values()), default=self.launched_at)
        return last - self.launched_at

    def query(self, mode: str, *args: object) -> dict[str, Any]:
        argv = [self.settings.query_python, str(QUERY), self.daemon.name, self.daemon.endpoint(), mode, *map(str, args)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT + 30, check=False)
        try:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise self.fail(f"status query failed: {done.stderr.strip()[-2000:]}") from None
        if done.returncode != 0:
            raise self.fail(result.get("error", f"status query failed: {done.stderr[-2000:]}"))
        return result

    def wait_ready(self, n: int) -> None:
        """Until the daemon itself reports ``n`` apps running (its start-up work is done)."""
        self.query("ready", n, START_TIMEOUT)

    def idle(self, seconds: float) -> tuple[float, int]:
        """CPU seconds and wake-ups of the daemon over ``seconds`` of doing nothing."""
        cpu, woke = procfs.cpu_seconds(self.pid), procfs.wakeups(self.pid)
        time.sleep(seconds)  # the measurement window itself
        return procfs.cpu_seconds(self.pid) - cpu, procfs.wakeups(self.pid) - woke

    def status_times(self) -> tuple[list[float], int]:
        result = self.query("time", self.settings.status_queries, 0.1)
        return result["seconds"], result["bytes"]

    def respawn(self, apps: list[str]) -> list[float]:
        """SIGKILL each app's child in turn; seconds until its replacement's own start.

        One kill at a time: the next child is killed only after the replacement of the
        last one has started, so no kill wakes a daemon up for another one's benefit
        (supervisor restarts on the next wake-up of its loop, whatever woke it). A
        random pause before each kill samples a polling daemon's whole interval, as
        crashes at random times would.
        """
        rng = random.Random(len(apps))
        log = self.work.log
        latencies = []
        for app in apps:
            time.sleep(rng.uniform(0, self.settings.kill_jitter))  # random phase
            at = time.time()
            os.kill(log.starts[app][-1].pid, signal.SIGKILL)
            if not log.wait(lambda lg, app=app, at=at: lg.first_start_after(app, at), 30, poll=0.005):
                raise self.fail(f"{app} was not restarted within 30 s of its SIGKILL")
            latencies.append(log.first_start_after(app, at).at - at)  # type: ignore[union-attr]
        return latencies

    def children_alive(self) -> int:
        """Children of the workload still running (the daemon itself not counted)."""
        tracked = {pid for pid in self.work.log.current_pids().values() if procfs.alive(pid)}
        marked = set(procfs.pids_with_marker(self.work.marker)) - {self.pid}
        return len(tracked | marked)

    def shutdown(self) -> tuple[float, int]:
        """SIGTERM -> the daemon's exit, in seconds; and the children still alive then."""
        assert self.exit is not None
        at = time.time()
        os.kill(self.pid, signal.SIGTERM)
        exited = self.exit.wait(60)
        if exited is None:
            raise self.fail("did not exit within 60 s of SIGTERM")
        assert self.proc is not None
        self.exit_code = self.proc.wait()
        return exited - at, self.children_alive()

    def kill_daemon(self) -> int:
        """SIGKILL the daemon; the children still alive ``ORPHAN_GRACE`` seconds later."""
        assert self.exit is not None
        os.kill(self.pid, signal.SIGKILL)
        if self.exit.wait(10) is None:
            raise self.fail("survived SIGKILL for 10 s")
        time.sleep(ORPHAN_GRACE)  # the counting window
        return self.children_alive()

    # -- cleanup ---------------------------------------------------------------------

    def cleanup(self) -> list[int]:
        """Kill the daemon's group and every marked process; returns what survived."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        elif self.proc is not None:
            self.proc.wait()
        if self.exit is not None:
            self.exit.close()
        deadline = time.monotonic() + 10
        while True:
            left = procfs.pids_with_marker(self.work.marker)
            left += [pid for pid in self.work.log.current_pids().values() if procfs.alive(pid) and pid not in left]
            if not left or time.monotonic() > deadline:
                return left
            procfs.kill(left)
            time.sleep(0.05)


def main_session(daemon: Daemon, settings: Settings) -> dict[str, Any]:
    n = len(daemon.apps)
    with Run(daemon, settings) as run:
        cold = run.wait_started(n)
        run.wait_ready(n)
        cpu, woke = run.idle(settings.idle_seconds)
        rss = procfs.rss_bytes(run.pid)
        status, size = run.status_times()
        shutdown, left = run.shutdown()
    return {
        "n": n, "cold_start_s": cold, "idle_cpu_s": cpu, "idle_wakeups": woke, "idle_seconds": settings.idle_seconds,
        "rss_mb": rss / 2**20, "status_ms": [s * 1000 for s in status], "status_bytes": size,
        "shutdown_s": shutdown, "shutdown_left": left, "exit_code": run.exit_code,
        "machine_busy": run.machine_busy, "anomaly": _anomaly(run, left),
    }


def _anomaly(run: Run, left: int) -> str:
    """What went wrong in a graceful shutdown, if anything (the workload is then kept)."""
    problems = []
    if run.exit_code:
        problems.append(f"exit code {run.exit_code}")
    if left:
        problems.append(f"{left} children left")
    return f"{run.daemon.label}: {', '.join(problems)}; daemon log in {run.work.dir}" if problems else ""


def respawn_session(daemon: Daemon, settings: Settings) -> dict[str, Any]:
    n = len(daemon.apps)
    with Run(daemon, settings) as run:
        run.wait_started(n)
        run.wait_ready(n)
        victims = daemon.apps[: settings.respawn_samples]
        respawn = run.respawn(victims)
        orphans = run.kill_daemon()
    return {"n": n, "respawn_ms": [s * 1000 for s in respawn], "sigkill_left": orphans, "machine_busy": run.machine_busy}
