"""The floors under Patrol's cold start and shutdown on this machine: a bare Python that
starts the benchmark's N children one after the other, then stops them, and does
nothing else.

    python bench/spawn_floor.py              # N=500, 3 rounds, beside `patrol run`
    python bench/spawn_floor.py --n 500 --rounds 5 --no-patrol

Cold start (``bench/run.py``) is the daemon's launch to the last of the N children's own
start stamps. The floor is the same measure for the least any supervisor written in
Python must do: start an interpreter (``-I -S``: no site-packages, nothing imported but
``subprocess``), and ``Popen`` the same ``child.sh`` N times with the same working
directory and environment, each in a session of its own, as Patrol does. No config, no
state file, no log pipes, no web stack. What Patrol takes beyond it is its own work;
the floor itself is the machine's (``vfork``+``exec`` of the shell, the shell's start,
``date``). With ``patrol`` beside it in the same rounds, the two are compared on the
same machine at the same moment: issue 18's target of 1.0 s for 500 apps was met on a
machine whose floor was lower than this one's may be.

Shutdown is the same for the stop: from the request (SIGTERM to Patrol; a line on the
bare starter's stdin) to the daemon's exit, the starter sending each child the stop
signal Patrol sends (SIGUSR1, the original's) and reaping them all: the kernel's part
(signal delivery, N exits, N reaps), without the bookkeeping of N runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from bench import envs
from bench.daemons import Patrol
from bench.sessions import Run, Settings
from bench.workload import Workload, app_ids

#: the bare starter: argv = script, ids...; env and cwd are the workload's. It prints
#: nothing; a line on its stdin stops the children (SIGUSR1, then every one reaped)
STARTER = """
import os, signal, subprocess, sys
children = [subprocess.Popen([sys.argv[1], app], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
            for app in sys.argv[2:]]
sys.stdin.readline()
for child in children:
    os.kill(child.pid, signal.SIGUSR1)
for child in children:
    child.wait()
"""


def floor_once(root: Path, n: int, timeout: float) -> tuple[float, float]:
    """Seconds from launching the bare starter to the last child's start stamp, and from
    asking it to stop to its exit (every child stopped and reaped)."""
    work = Workload(root, "floor")
    ids = app_ids(n)
    launched = time.time()
    starter = subprocess.Popen([sys.executable, "-I", "-S", "-c", STARTER, str(work.script), *ids],
                               cwd=work.dir, env=work.env(), stdin=subprocess.PIPE)
    try:
        if not work.log.wait(lambda log: log.started() >= n, timeout):
            raise RuntimeError(f"only {work.log.started()} of {n} children started within {timeout:g} s")
        cold = max(runs[0].at for runs in work.log.starts.values()) - launched
        time.sleep(2)  # as after Patrol's start: the children settled
        asked = time.time()
        assert starter.stdin is not None
        starter.stdin.write(b"stop\n")
        starter.stdin.close()
        starter.wait(timeout)
        return cold, time.time() - asked
    finally:
        starter.kill()  # (a starter past the timeout stops nothing more)
        starter.wait()
        work.log.refresh()
        pids = [runs[0].pid for runs in work.log.starts.values()]  # also those of a round that failed
        for pid in pids:  # by pid: every child logged its own
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass  # not ours: the starter's children, re-parented away
        work.remove()


def patrol_once(root: Path, n: int, exe: str, settings: Settings) -> tuple[float, float]:
    """Patrol's cold start and its shutdown (SIGTERM to exit), as bench/run.py times them."""
    work = Workload(root, "floor-patrol")
    try:
        with Run(Patrol(work, app_ids(n), exe, "patrol"), settings) as run:
            cold = run.wait_started(n)
            time.sleep(2)
            stop, _ = run.shutdown()
        return cold, stop
    finally:
        work.remove()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/spawn_floor.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=500, help="children (default 500)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--no-patrol", action="store_true", help="the floor only")
    p.add_argument("--patrol", help="patrol executable (default as bench/run.py)")
    args = p.parse_args(argv)
    say = lambda m: print(m, file=sys.stderr, flush=True)
    root = Path(os.environ.get("TMPDIR", "/tmp"))
    exe = "" if args.no_patrol else os.path.abspath(envs.patrol_executable(args.patrol, False, say))
    settings = Settings(0, 0, 0, 0.2, sys.executable, start_timeout=300)
    floors: list[tuple[float, float]] = []
    patrols: list[tuple[float, float]] = []
    for r in range(args.rounds):
        floors.append(floor_once(root, args.n, 300))
        say(f"round {r + 1}: floor start {floors[-1][0]:.2f} s, stop {floors[-1][1]:.2f} s")
        if exe:
            patrols.append(patrol_once(root, args.n, exe, settings))
            say(f"round {r + 1}: patrol start {patrols[-1][0]:.2f} s, stop {patrols[-1][1]:.2f} s")
    print(f"| N={args.n}, {args.rounds} rounds | median | range |\n|---|---|---|")
    rows = [("floor: bare Python starting the children", floors, 0),
            ("`patrol run`: cold start", patrols, 0),
            ("floor: bare Python stopping and reaping them", floors, 1),
            ("`patrol run`: shutdown (SIGTERM to exit)", patrols, 1)]
    for label, runs, k in rows:
        if runs:
            values = [run[k] for run in runs]
            print(f"| {label} | {statistics.median(values):.2f} s | {min(values):.2f}–{max(values):.2f} s |")
    if patrols:
        for name, k in (("cold start", 0), ("shutdown", 1)):
            own = statistics.median(p[k] for p in patrols) - statistics.median(f[k] for f in floors)
            print(f"\nPatrol's own share of the {name}: {own:.2f} s", end="")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
