"""One daemon, one workload, one series of measurements, and nothing left behind.

A :class:`Run` launches a daemon in its own session with the workload's marker in its
environment; leaving the ``with`` block stops a daemon that has a stop command (pm2),
then kills the daemon, its launcher's process group and every process carrying the
marker, by pid, and checks that none is left. The two session kinds measure what the
issue's table lists:

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
#: the longest the idle window waits for the daemon's start-up work to end (see Run.idle)
SETTLE_MAX = 10.0


class BenchError(RuntimeError):
    """A daemon did not do what the workload needs (the run is invalid, not slow)."""


class StartTimeout(BenchError):
    """Not every app started within the deadline: at a large N, a finding rather than a broken run."""

    def __init__(self, message: str, started: int) -> None:
        super().__init__(message)
        self.started = started


@dataclass
class Settings:
    idle_seconds: float
    status_queries: int
    respawn_samples: int
    kill_jitter: float
    query_python: str
    #: how often the status command a user types is timed, for daemons that have one (pm2 jlist)
    status_cli_runs: int = 3
    #: how long all N apps may take to start (and to be reported running) before the session fails
    start_timeout: float = START_TIMEOUT


class Run:
    """A running daemon (context manager): launch, query, and clean up by pid."""

    def __init__(self, daemon: Daemon, settings: Settings) -> None:
        self.daemon = daemon
        self.work = daemon.work
        self.settings = settings
        #: what was launched: the daemon itself, or (pm2) the command that spawns it
        self.proc: subprocess.Popen[bytes] | None = None
        #: the long-running daemon (for pm2, its God daemon, which the launcher forked away)
        self.daemon_pid = 0
        #: command-line clients started for the daemon (launcher, stop command): never "children left"
        self.helpers: set[int] = set()
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
                self.daemon.argv(), cwd=self.work.dir, env=self.daemon.env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            self.daemon_pid = self.daemon.locate(self.proc.pid, START_TIMEOUT)
        except TimeoutError as exc:
            self.cleanup()
            raise self.fail(str(exc)) from None
        if self.daemon_pid != self.proc.pid:
            self.helpers.add(self.proc.pid)
        self.exit = procfs.ExitWatch(self.daemon_pid)
        return self

    def __exit__(self, *exc: object) -> None:
        busy, total = procfs.machine_busy()
        self.machine_busy = (busy - self._busy[0]) / max(1, total - self._busy[1])
        leftovers = self.cleanup()
        if leftovers and exc[0] is None:
            raise BenchError(f"{self.daemon.name}: could not kill leftover processes {leftovers}")

    @property
    def pid(self) -> int:
        """The daemon's pid (for pm2 its God daemon, not the command that launched it)."""
        return self.daemon_pid

    def gone(self) -> bool:
        """Whether the daemon has exited."""
        assert self.proc is not None
        if self.daemon_pid == self.proc.pid:
            return self.proc.poll() is not None
        return not procfs.alive(self.daemon_pid)

    def _reap_daemon(self) -> int | None:
        """The exit status of a daemon that has exited, if it is (or became) our child.

        A daemon that forked itself away is reparented to the benchmark, which is a
        child subreaper (see ``bench.run``), once the command that launched it is gone.
        """
        assert self.proc is not None
        if self.daemon_pid == self.proc.pid:
            return self.proc.wait()
        try:
            _, status = os.waitpid(self.daemon_pid, 0)
        except ChildProcessError:
            return None  # not ours: the benchmark is not a subreaper, or the launcher still runs
        return os.waitstatus_to_exitcode(status)

    # -- observations ----------------------------------------------------------------

    def fail(self, what: str) -> BenchError:
        log = (self.work.dir / "daemon.log").read_text(errors="replace")[-3000:]
        return BenchError(f"{self.daemon.label}: {what} (workload in {self.work.dir}); daemon log tail:\n{log}")

    def wait_started(self, n: int) -> float:
        """Seconds from launch until the last of ``n`` apps logged its first start."""
        timeout = self.settings.start_timeout
        if not self.work.log.wait(lambda log: log.started() >= n or self.gone(), timeout):
            started = self.work.log.started()
            raise StartTimeout(str(self.fail(f"only {started} of {n} apps started within {timeout:g} s")), started)
        if self.work.log.started() < n:
            raise self.fail(f"exited after {self.work.log.started()} of {n} starts")
        last = max((runs[0].at for runs in self.work.log.starts.values()), default=self.launched_at)
        return last - self.launched_at

    def query(self, mode: str, *args: object) -> dict[str, Any]:
        argv = [self.settings.query_python, str(QUERY), self.daemon.name, self.daemon.endpoint(), mode, *map(str, args)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=self.settings.start_timeout + 30,
                              check=False)
        try:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise self.fail(f"status query failed: {done.stderr.strip()[-2000:]}") from None
        if done.returncode != 0:
            raise self.fail(result.get("error", f"status query failed: {done.stderr[-2000:]}"))
        return result

    def wait_ready(self, n: int) -> None:
        """Until the daemon itself reports ``n`` apps running (its start-up work is done).

        A launcher that is not the daemon (``pm2 start``) is waited for too: it asks the
        daemon for the process list before it exits, which would land in the idle window.
        """
        self.query("ready", n, self.settings.start_timeout)
        assert self.proc is not None
        if self.proc.pid != self.daemon_pid:
            try:
                self.proc.wait(self.settings.start_timeout)
            except subprocess.TimeoutExpired:
                raise self.fail(f"{self.daemon.argv()[0]} did not exit after starting the apps") from None

    def idle(self, seconds: float) -> tuple[float, int]:
        """CPU seconds and wake-ups of the daemon over ``seconds`` of doing nothing.

        The window opens once the daemon's start-up work is over: its CPU time stood
        still for half a second (at most :data:`SETTLE_MAX` seconds after it reported
        every app running). A daemon may finish start-up work after that report (Patrol
        opens a start burst's log files just after spawning it); counting that tail
        would measure the start, not the idle. A daemon that never stands still (a
        polling one) is measured after the wait, as before.
        """
        deadline = time.monotonic() + SETTLE_MAX
        before = procfs.cpu_seconds(self.pid)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = procfs.cpu_seconds(self.pid)
            if now == before:
                break
            before = now
        cpu, woke = procfs.cpu_seconds(self.pid), procfs.wakeups(self.pid)
        time.sleep(seconds)  # the measurement window itself
        spent = procfs.cpu_seconds(self.pid) - cpu
        # whole clock ticks: 0.03 - 0.00 must not read 0.030000000000000027 (over a 0.03 s bound)
        return round(spent * procfs.CLK_TCK) / procfs.CLK_TCK, procfs.wakeups(self.pid) - woke

    def status_times(self) -> tuple[list[float], int]:
        result = self.query("time", self.settings.status_queries, 0.1)
        return result["seconds"], result["bytes"]

    def status_cli_times(self) -> list[float]:
        """Seconds of the status command a user types (pm2 jlist), start to exit; [] if none."""
        argv = self.daemon.status_cli_argv()
        if not argv:
            return []
        times = []
        for _ in range(self.settings.status_cli_runs):
            time.sleep(0.1)  # pacing, as for the protocol queries
            t0 = time.perf_counter()
            done = subprocess.run(argv, cwd=self.work.dir, env=self.daemon.env(), capture_output=True,
                                  timeout=START_TIMEOUT, check=False)
            times.append(time.perf_counter() - t0)
            if done.returncode != 0:
                raise self.fail(f"{' '.join(argv)} exited with {done.returncode}: {done.stderr[-2000:]!r}")
        return times

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
        marked = set(procfs.pids_with_marker(self.work.marker)) - {self.pid} - self.helpers
        return len(tracked | marked)

    def shutdown(self) -> tuple[float, int]:
        """Graceful stop -> the daemon's exit, in seconds; and the children still alive then.

        The stop is SIGTERM, or the daemon's own stop command (``pm2 kill``), timed from
        the moment it is launched: what stopping the daemon costs whoever stops it.
        """
        assert self.exit is not None
        timeout = self.daemon.shutdown_timeout()
        stop = self.daemon.stop_argv()
        at = time.time()
        stopper = None
        if stop:
            stopper = subprocess.Popen(stop, cwd=self.work.dir, env=self.daemon.env(), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            self.helpers.add(stopper.pid)
        else:
            os.kill(self.pid, signal.SIGTERM)
        exited = self.exit.wait(timeout)
        if exited is None:
            raise self.fail(f"did not exit within {timeout:g} s of {'`' + ' '.join(stop) + '`' if stop else 'SIGTERM'}")
        left = self.children_alive()
        self.exit_code = self._reap_daemon()
        if stopper is not None:
            try:
                stopper.wait(30)
            except subprocess.TimeoutExpired:
                pass  # killed by pid with the rest in cleanup
        return exited - at, left

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
        """Stop the daemon, kill what is left by pid; returns what survived.

        A daemon with a stop command (pm2) that still runs is stopped with it first
        (bounded), so it takes its own processes down; then the launcher's process
        group, the daemon and every process carrying the marker or logged as a child
        are killed by pid, and the ones that became our children are reaped.
        """
        stop = self.daemon.stop_argv()
        if stop and self.daemon_pid and procfs.alive(self.daemon_pid):
            try:
                subprocess.run(stop, cwd=self.work.dir, env=self.daemon.env(), stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=self.daemon.shutdown_timeout(), check=False)
            except subprocess.TimeoutExpired:
                pass  # killed by pid below
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc is not None:
            self.proc.wait()
        if self.exit is not None:
            self.exit.close()
        killed: set[int] = set()
        deadline = time.monotonic() + 10
        while True:
            left = procfs.pids_with_marker(self.work.marker)
            left += [pid for pid in self.work.log.current_pids().values() if procfs.alive(pid) and pid not in left]
            left += [pid for pid in (self.daemon_pid, *self.helpers) if pid and procfs.alive(pid) and pid not in left]
            if not left or time.monotonic() > deadline:
                procfs.reap(killed | {self.daemon_pid, *self.helpers, *self.work.log.current_pids().values()})
                return left
            procfs.kill(left)
            killed.update(left)
            time.sleep(0.05)


def main_session(daemon: Daemon, settings: Settings) -> dict[str, Any]:
    n = len(daemon.apps)
    with Run(daemon, settings) as run:
        cold = run.wait_started(n)
        run.wait_ready(n)
        cpu, woke = run.idle(settings.idle_seconds)
        rss = procfs.rss_bytes(run.pid)
        status, size = run.status_times()
        status_cli = run.status_cli_times()
        shutdown, left = run.shutdown()
    result = {
        "n": n, "cold_start_s": cold, "idle_cpu_s": cpu, "idle_wakeups": woke, "idle_seconds": settings.idle_seconds,
        "rss_mb": rss / 2**20, "status_ms": [s * 1000 for s in status], "status_bytes": size,
        "shutdown_s": shutdown, "shutdown_left": left, "exit_code": run.exit_code,
        "machine_busy": run.machine_busy, "anomaly": _anomaly(run, left),
    }
    if status_cli:
        result["status_cli_ms"] = [s * 1000 for s in status_cli]
    return result


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


def scale_session(daemon: Daemon, settings: Settings) -> dict[str, Any]:
    """The main session's figures and respawns from one run at a large N.

    Starting thousands of apps twice (once for a main, once for a respawn session) would
    double the longest part of the run; the respawns come after the status queries and
    before the graceful shutdown, so the idle window and RSS are untouched by them. The
    children a SIGKILLed daemon leaves are not measured here (there are N of them, at any N).
    """
    n = len(daemon.apps)
    with Run(daemon, settings) as run:
        try:
            cold = run.wait_started(n)
        except StartTimeout as exc:
            slow: StartTimeout | None = exc  # the figures that need every app running cannot be taken
        else:
            slow = None
            run.wait_ready(n)
            cpu, woke = run.idle(settings.idle_seconds)
            rss = procfs.rss_bytes(run.pid)
            status, size = run.status_times()
            respawn = run.respawn(daemon.apps[: settings.respawn_samples])
            shutdown, left = run.shutdown()
    if slow is not None:
        return {"n": n, "failed": str(slow).split(" (workload in ")[0], "started": slow.started, "cold_start_min_s": settings.start_timeout,
                "machine_busy": run.machine_busy}
    return {
        "n": n, "cold_start_s": cold, "idle_cpu_s": cpu, "idle_wakeups": woke, "idle_seconds": settings.idle_seconds,
        "rss_mb": rss / 2**20, "status_ms": [s * 1000 for s in status], "status_bytes": size,
        "respawn_ms": [s * 1000 for s in respawn],
        "shutdown_s": shutdown, "shutdown_left": left, "exit_code": run.exit_code,
        "machine_busy": run.machine_busy, "anomaly": _anomaly(run, left),
    }
