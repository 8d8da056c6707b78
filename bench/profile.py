"""Where Patrol spends its time in one phase of the benchmark: py-spy, summarised.

    python bench/profile.py start    [--n 500]   # launch -> all children started
    python bench/profile.py status   [--n 500]   # GET /status/ back to back
    python bench/profile.py respawn  [--n 100]   # SIGKILL children one after another
    python bench/profile.py shutdown [--n 500]   # SIGTERM -> exit
    python bench/profile.py udp | http           # pings as fast as Patrol answers

Runs Patrol on the benchmark's workload, samples it with py-spy (installed into the
throwaway bench/.venv-profile) while the phase runs, and prints the functions with the
largest share of samples, inclusive and exclusive. The raw collapsed stacks are kept
(``--out``) for a flame graph. Sampling slows Patrol down, so the phase's figures here
are not the benchmark's; the shares are what to read.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from bench import envs
from bench.daemons import Patrol
from bench.pings import LOADGEN, PING_APPS
from bench.sessions import Run, Settings
from bench.workload import Workload, app_ids

PHASES = ("start", "status", "respawn", "shutdown", "udp", "http")
RATE = 1000  # samples per second


def summarise(raw: Path, top: int) -> str:
    """Inclusive share per function, exclusive share per line, from collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    exclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        for name in dict.fromkeys(f.rsplit(":", 1)[0] for f in frames):  # once per stack
            inclusive[name] += n
        exclusive[frames[-1]] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "inclusive (function, file):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "exclusive (function, file:line):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in exclusive.most_common(top // 2)]
    return "\n".join(lines)


def spy(pyspy: Path, pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(pyspy), "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw",
                             "--nonblocking", "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    profiler.wait(60)


def child_of(pid: int) -> int:
    """The (first) child of ``pid``: Patrol, when py-spy launched it."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            children = f.read().split()
        if children:
            return int(children[0])
    raise ProcessLookupError(f"{pid} has no child")


def status_loop(endpoint: str, seconds: float) -> int:
    host, _, port = endpoint.rpartition(":")
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/status/")
        conn.getresponse().read()
        conn.close()
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/profile.py", description=__doc__.split("\n\n")[0])
    p.add_argument("phase", choices=PHASES)
    p.add_argument("--n", type=int, help="apps (default 500; respawn 100; pings: 10 ping apps)")
    p.add_argument("--seconds", type=float, default=8.0, help="how long to load Patrol (status, respawn, pings)")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds between the start and the shutdown, as the benchmark leaves it (default 10)")
    p.add_argument("--patrol", help="patrol executable (default as bench/run.py)")
    p.add_argument("--out", type=Path, help="where to keep the raw stacks (default bench/results/profile-PHASE.txt)")
    p.add_argument("--top", type=int, default=40, help="rows to print")
    args = p.parse_args(argv)
    say = lambda m: print(m, file=sys.stderr, flush=True)
    pyspy = envs.profiler_bin(False, say) / "py-spy"
    exe = envs.patrol_executable(args.patrol, False, say)
    out = args.out or envs.BENCH / "results" / f"profile-{args.phase}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    n = args.n or (100 if args.phase == "respawn" else 0 if args.phase in ("udp", "http") else 500)
    ping_apps = {f"p{i}": args.phase for i in range(PING_APPS)} if args.phase in ("udp", "http") else None
    wrapper = [str(pyspy), "record", "--rate", str(RATE), "--format", "raw", "--output", str(out), "--"]
    root = Path(os.environ.get("TMPDIR", "/tmp"))
    patrol = Patrol(Workload(root, "profile"), app_ids(n), exe, envs.patrol_label(exe), ping_apps,
                    wrapper=wrapper if args.phase == "start" else None)
    settings = Settings(0, 0, 0, 0.2, sys.executable)
    with Run(patrol, settings) as run:
        run.wait_started(n)
        run.wait_ready(n)  # ping apps are adopted by their first ping
        if args.phase == "start":  # py-spy runs Patrol: kill Patrol, and py-spy writes
            os.kill(child_of(run.pid), signal.SIGKILL)
            run.exit.wait(60)  # type: ignore[union-attr]
        elif args.phase == "shutdown":
            time.sleep(args.settle)  # the start's own work (log files made in the background) is done
            profiler = spy(pyspy, run.pid, out)
            time.sleep(1)  # py-spy attaches
            run.shutdown()
            profiler.wait(60)
        else:
            profiler = spy(pyspy, run.pid, out)
            time.sleep(1)  # py-spy attaches
            if args.phase == "status":
                say(f"{status_loop(patrol.http, args.seconds)} status queries")
            elif args.phase == "respawn":
                settings.kill_jitter = 0.01
                victims = (patrol.apps * 100)[: int(args.seconds / 0.02)]
                say(f"{len(run.respawn(victims))} respawns")
            else:
                target = patrol.udp if args.phase == "udp" else patrol.http
                gen = [sys.executable, str(LOADGEN), args.phase, target, "0", str(args.seconds), str(time.time()),
                       ",".join(ping_apps or ())]
                if args.phase == "http":
                    gen.append("4")
                result = json.loads(subprocess.run(gen, capture_output=True, text=True, check=True).stdout)
                say(f"{result['answered']} pings answered in {result['elapsed']:.1f} s")
            stop(profiler)
    patrol.work.remove()
    print(summarise(out, args.top))
    print(f"\nraw stacks: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
