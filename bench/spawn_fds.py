"""What one spawn costs the loop while Patrol holds many descriptors, with and without
the spawn thread.

    python bench/spawn_fds.py                       # 0, 1,000 and 10,000 open pipes
    python bench/spawn_fds.py --pipes 20000 --spawns 300

Every fork copies the caller's descriptor table and the child's ``exec`` closes the
copies: Patrol holds two pipe read ends per running app, so the cost of a spawn grows
with the apps. :mod:`patrol.engine.spawn_thread` starts children from a thread that
left that table (``unshare(CLONE_FILES)``). This opens N pipes in this process (as
N/2 apps would) and times :func:`patrol.engine.spawn.spawn` of ``/bin/true`` on the
calling thread (``PATROL_SPAWN_THREAD=0``, in a child interpreter) and through the
spawn thread: from the call to its return, which is what the loop waits for. Prints a
markdown table of medians and 90th percentiles. Run it as root or not: nothing else is
touched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: run in a fresh interpreter per case, so that the spawn thread's setting is the
#: process's own: prints the spawn times in seconds as JSON
MEASURE = r"""
import json, os, resource, sys, time
from patrol.engine import spawn_thread
from patrol.engine.spawn import spawn

pipes, spawns = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * pipes + 256)), hard))
spawn_thread.current()  # started before the pipes, as in Patrol (it closes its copies anyway)
held = [os.pipe() for _ in range(pipes // 2)]
times = []
for _ in range(spawns):
    r, w = os.pipe()
    started = time.perf_counter()
    child = spawn(["/bin/true"], env={}, cwd="/", stdout=w, stderr=w)
    times.append(time.perf_counter() - started)
    os.close(w)
    os.close(r)
    os.waitpid(child.pid, 0)
print(json.dumps({"times": times, "thread": spawn_thread.current() is not None}))
"""


def measure(pipes: int, spawns: int, thread: bool) -> list[float]:
    env = {**os.environ, "PATROL_SPAWN_THREAD": "1" if thread else "0",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(pipes), str(spawns)], env=env, capture_output=True,
                          text=True, timeout=600, check=True)
    result = json.loads(done.stdout)
    if result["thread"] != thread:
        raise SystemExit(f"the spawn thread {'did not start' if thread else 'started anyway'}: {done.stderr}")
    return sorted(result["times"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/spawn_fds.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--pipes", type=int, nargs="+", default=[0, 1000, 10000], help="descriptors held (pipe ends)")
    p.add_argument("--spawns", type=int, default=200, help="spawns timed per case")
    args = p.parse_args(argv)
    print("| descriptors held | loop's thread, median | p90 | spawn thread, median | p90 |")
    print("|---:|---:|---:|---:|---:|")
    for pipes in args.pipes:
        row = [f"{pipes:,}"]
        for thread in (False, True):
            times = measure(pipes, args.spawns, thread)
            row += [f"{times[len(times) // 2] * 1e3:.2f} ms", f"{times[len(times) * 9 // 10] * 1e3:.2f} ms"]
        print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
