#!/usr/bin/env python3
"""Log throughput: one app floods numbered lines through Patrol's pipe into rotated files.

    python bench/logflood.py                        # 10 MB/s for 5 s, log-max-bytes 1 MiB, 3 generations
    python bench/logflood.py --rate 50000000 --seconds 4

Reports the rate reached, the share of one core Patrol used meanwhile (utime + stime
from ``/proc``), and the bytes left on disk (bounded by ``(files + 1) x max-bytes`` plus
the stderr file). Everything started is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from patrol.testing import write_testapp  # noqa: E402


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def progress(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000_000, help="bytes per second the app writes")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-bytes", type=int, default=1 << 20)
    parser.add_argument("--files", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="patrol-logflood-"))
    write_testapp(work)
    lines = int(args.rate * args.seconds / 100)
    done = work / "progress"
    config = {
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "udp": {"listen": f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"},
        "apps": {"flood": {
            "keepalive": 1, "name": "flood", "binary": "testapp", "working-directory": str(work),
            "log-directory": "logs", "pid-path": "flood.pid", "log-max-bytes": args.max_bytes, "log-max-files": args.files,
            "env": [f"TESTAPP_FLOOD={args.rate}", f"TESTAPP_FLOOD_LINES={lines}", f"TESTAPP_PROGRESS={done}"]}},
    }
    (work / "patrol.json").write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(work / "patrol.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "patrol", "run", str(work / "patrol.json")], cwd=work,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while progress(done) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started, cpu_before = time.monotonic(), cpu_seconds(proc.pid)
        while progress(done) < lines and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed, cpu = time.monotonic() - started, cpu_seconds(proc.pid) - cpu_before
        disk = sum(p.stat().st_size for p in (work / "logs").rglob("*") if p.is_file())
        if progress(done) < lines:
            sys.exit(f"the app did not finish within 60 s; see {work / 'patrol.log'}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"rate_mb_s": round(lines * 100 / 1e6 / elapsed, 1), "patrol_core_share": round(cpu / elapsed, 3),
                      "disk_bytes": disk, "bound_bytes": (args.files + 1) * args.max_bytes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
