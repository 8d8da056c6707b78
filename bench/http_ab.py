"""Interleaved A/B of HTTP ping cost: Patrol executables side by side, same load.

    python bench/http_ab.py EXE_A EXE_B [--rounds 4] [--rate 4000] [--seconds 6]

Each round starts every executable in turn (order rotating) on the benchmark's ping
workload (10 ``http`` ping apps, no other app), loads it as ``bench/run.py`` does (two
``bench/loadgen.py`` processes, open loop at ``--rate``; 0 = closed loop) and prints the
answered rate, Patrol's CPU per ping and the generators'. The machine is shared and
noisy: read the rounds side by side, not one figure alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from bench import envs
from bench.daemons import Patrol
from bench.pings import PING_APPS, _load
from bench.sessions import Run, Settings
from bench.workload import Workload


def _user_sys(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of the process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def one(exe: str, rate: float, seconds: float, procs: int) -> dict[str, float]:
    ping_apps = {f"h{i}": "http" for i in range(PING_APPS)}
    patrol = Patrol(Workload(Path("/tmp"), "http-ab"), [], exe, envs.patrol_label(exe), ping_apps)
    with Run(patrol, Settings(0, 0, 0, 0.2, sys.executable)) as run:
        run.wait_ready(0)
        _load(run, "http", 500, 1.0, procs, list(ping_apps))  # warm up: adopt the apps
        before = _user_sys(run.pid)
        result = _load(run, "http", rate, seconds, procs, list(ping_apps))
        after = _user_sys(run.pid)
        result["user_us_per_ping"] = (after[0] - before[0]) / max(1, result["answered"]) * 1e6
        result["sys_us_per_ping"] = (after[1] - before[1]) / max(1, result["answered"]) * 1e6
        run.shutdown()
    patrol.work.remove()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/http_ab.py", description=__doc__.split("\n\n")[0])
    p.add_argument("exes", nargs="+")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--rate", type=float, default=4000)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--procs", type=int, default=2)
    args = p.parse_args(argv)
    seen: dict[str, list[dict[str, float]]] = {exe: [] for exe in args.exes}
    for r in range(args.rounds):
        order = args.exes[r % len(args.exes):] + args.exes[: r % len(args.exes)]
        for exe in order:
            res = one(exe, args.rate, args.seconds, args.procs)
            seen[exe].append(res)
            print(f"round {r + 1} {exe}: {res['rate']:7.0f}/s answered, lost {res['lost']:5d}, "
                  f"patrol {res['cpu_us_per_ping']:5.0f} us/ping (user {res['user_us_per_ping']:.0f}, "
                  f"sys {res['sys_us_per_ping']:.0f}), generators {res['generator_cpu_us_per_ping']:5.0f}",
                  flush=True)
    for exe, rs in seen.items():
        print(f"{exe}: median {statistics.median(r['rate'] for r in rs):.0f}/s, "
              f"patrol {statistics.median(r['cpu_us_per_ping'] for r in rs):.0f} us/ping "
              f"[{min(r['cpu_us_per_ping'] for r in rs):.0f}-{max(r['cpu_us_per_ping'] for r in rs):.0f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
