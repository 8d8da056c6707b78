"""The floor under Patrol's cold start on this machine: a bare Python that starts the
benchmark's N children one after the other and does nothing else.

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

#: the bare starter: argv = script, ids...; env and cwd are the workload's
STARTER = """
import subprocess, sys
for app in sys.argv[2:]:
    subprocess.Popen([sys.argv[1], app], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
"""


def floor_once(root: Path, n: int, timeout: float) -> float:
    """Seconds from launching the bare starter to the last child's start stamp."""
    work = Workload(root, "floor")
    ids = app_ids(n)
    launched = time.time()
    starter = subprocess.Popen([sys.executable, "-I", "-S", "-c", STARTER, str(work.script), *ids],
                               cwd=work.dir, env=work.env())
    try:
        starter.wait(timeout)
        if not work.log.wait(lambda log: log.started() >= n, timeout):
            raise RuntimeError(f"only {work.log.started()} of {n} children started within {timeout:g} s")
        return max(runs[0].at for runs in work.log.starts.values()) - launched
    finally:
        starter.kill()  # (a starter past the timeout starts no more children)
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


def patrol_once(root: Path, n: int, exe: str, settings: Settings) -> float:
    work = Workload(root, "floor-patrol")
    try:
        with Run(Patrol(work, app_ids(n), exe, "patrol"), settings) as run:
            cold = run.wait_started(n)
            run.shutdown()
        return cold
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
    floors: list[float] = []
    patrols: list[float] = []
    for r in range(args.rounds):
        floors.append(floor_once(root, args.n, 300))
        say(f"round {r + 1}: floor {floors[-1]:.2f} s")
        if exe:
            patrols.append(patrol_once(root, args.n, exe, settings))
            say(f"round {r + 1}: patrol {patrols[-1]:.2f} s")
    print(f"| N={args.n}, {args.rounds} rounds | median | range |\n|---|---|---|")
    print(f"| floor: bare Python starting the children | {statistics.median(floors):.2f} s | "
          f"{min(floors):.2f}–{max(floors):.2f} s |")
    if patrols:
        print(f"| `patrol run`: cold start | {statistics.median(patrols):.2f} s | {min(patrols):.2f}–{max(patrols):.2f} s |")
        print(f"\nPatrol's own share: {statistics.median(patrols) - statistics.median(floors):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
