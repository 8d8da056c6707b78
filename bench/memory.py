"""Patrol's memory per app: RSS at N = 1, 500 and 1000 apps, and where the bytes are.

    python bench/memory.py                 # RSS at each N, and the cost of one more app
    python bench/memory.py --trace         # and the Python allocations that grow with N
    python bench/memory.py --n 1 2000 --patrol .venv/bin/patrol

Runs Patrol on the benchmark's workload (every app a pid-patrol keepalive running a
shell script that execs ``sleep``), waits until every app started and the start burst
settled, and reads VmRSS. The cost of one more app is (RSS at the largest N - RSS at the
one before) / the difference in N: the base (imports, threads, the web stack) cancels
out. RSS is nearly deterministic, so this can run on a busy machine.

With ``--trace`` each N runs a second time under tracemalloc (slow: several times the
start time), and the allocation sites that grew between the last two N are listed in
bytes per app: what each remaining KB per app is. Python's allocations are not all of
RSS: the allocators' own overhead and free space, and SQLite's page cache, are not in
the list.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from bench import envs
from bench.daemons import Patrol
from bench.sessions import Run, Settings
from bench.workload import Workload, app_ids

SETTLE = 3.0  # seconds after the last start: the state writes and log files of the burst are done
#: the same under tracemalloc, where everything is several times slower: at 1,000 apps
#: the writers were still making the burst's log files 3 s after the last start, so
#: the list counted queued file creations that the untraced RSS no longer holds
TRACED_SETTLE = 10.0
#: run as ``python -c TRACER TRIGGER OUT run CONFIG``: Patrol under tracemalloc, which dumps
#: a snapshot to OUT once the file TRIGGER exists
TRACER = """
import gc, os, sys, threading, time, tracemalloc
tracemalloc.start(1)
trigger, out = sys.argv[1], sys.argv[2]
def dump():
    while not os.path.exists(trigger):
        time.sleep(0.1)
    gc.collect()
    tracemalloc.take_snapshot().dump(out)
    open(out + ".done", "w").close()
threading.Thread(target=dump, daemon=True).start()
sys.argv = ["patrol", *sys.argv[3:]]
from patrol.cli import main
sys.exit(main())
"""


class TracedPatrol(Patrol):
    """Patrol launched through :data:`TRACER` by the Python of its installation."""

    def __init__(self, *args: object, snapshot: Path, **kw: object) -> None:
        self.snapshot = snapshot
        super().__init__(*args, **kw)  # type: ignore[arg-type]

    def argv(self) -> list[str]:
        python = str(Path(self.executable).parent / "python")
        return [python, "-c", TRACER, str(self.snapshot) + ".trigger", str(self.snapshot), "run",
                str(self.config_path)]


def vm_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ProcessLookupError(pid)


def measure(patrol: Patrol, n: int, settings: Settings, snapshot: Path | None = None,
            look: Callable[[int], None] | None = None) -> int:
    """RSS in KiB once ``n`` apps started and settled (and the snapshot, when traced).

    ``look`` is called with Patrol's pid right after the RSS is read, while it still runs
    (bench/rss_floor.py reads its smaps there, of the very process whose RSS it reports).
    """
    with Run(patrol, settings) as run:
        run.wait_started(n)
        time.sleep(SETTLE if snapshot is None else TRACED_SETTLE)
        rss = vm_rss_kb(run.pid)
        if look is not None:
            look(run.pid)
        if snapshot is not None:
            Path(str(snapshot) + ".trigger").touch()
            done = Path(str(snapshot) + ".done")
            deadline = time.monotonic() + 300
            while not done.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        run.shutdown()
    return rss


def grown(before: Path, after: Path, apps: int, top: int) -> list[str]:
    """The allocation sites that grew from ``before`` to ``after``, in bytes per app."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    old = tracemalloc.Snapshot.load(str(before)).filter_traces(ignore)
    new = tracemalloc.Snapshot.load(str(after)).filter_traces(ignore)
    stats = new.compare_to(old, "lineno")
    total = sum(s.size_diff for s in stats)
    lines = [f"Python allocations: {total / apps:,.0f} B per app", ""]
    for s in stats[:top]:
        frame = s.traceback[0]
        lines.append(f"  {s.size_diff / apps:7,.0f} B {s.count_diff / apps:5.1f} objects  {frame.filename}:{frame.lineno}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/memory.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[1, 500, 1000], help="app counts, ascending")
    p.add_argument("--trace", action="store_true", help="also list the Python allocations that grow with N")
    p.add_argument("--top", type=int, default=30, help="allocation sites to list")
    p.add_argument("--patrol", help="patrol executable (default as bench/run.py)")
    args = p.parse_args(argv)
    say = lambda m: print(m, file=sys.stderr, flush=True)
    exe = os.path.abspath(envs.patrol_executable(args.patrol, False, say))  # the daemons run in their work directory
    label = envs.patrol_label(exe)
    root = Path(os.environ.get("TMPDIR", "/tmp"))
    settings = Settings(0, 0, 0, 0.2, sys.executable, start_timeout=300)
    rss: dict[int, int] = {}
    snapshots: dict[int, Path] = {}
    for n in args.n:
        work = Workload(root, "memory")
        try:
            rss[n] = measure(Patrol(work, app_ids(n), exe, label), n, settings)
            say(f"N={n}: RSS {rss[n] / 1024:.1f} MiB")
            if args.trace:
                snapshots[n] = root / f"memory-{os.getpid()}-{n}.snapshot"
                traced = Workload(root, "memory-traced")
                try:
                    measure(TracedPatrol(traced, app_ids(n), exe, label, snapshot=snapshots[n]), n, settings,
                            snapshots[n])
                finally:
                    traced.remove()
        finally:
            work.remove()
    print(f"{label}: RSS after all apps started ({SETTLE:g} s settled)\n")
    print("| apps | RSS |\n|---:|---:|")
    for n, kb in rss.items():
        print(f"| {n} | {kb / 1024:.1f} MiB |")
    if len(rss) >= 2:
        (a, ra), (b, rb) = list(rss.items())[-2:]
        print(f"\nper extra app: {(rb - ra) * 1024 / (b - a) / 1000:.1f} kB (N={a} -> {b})")
    if len(snapshots) >= 2:
        (a, sa), (b, sb) = list(snapshots.items())[-2:]
        print("\n" + "\n".join(grown(sa, sb, b - a, args.top)))
        for path in snapshots.values():
            for extra in ("", ".trigger", ".done"):
                Path(str(path) + extra).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
