#!/usr/bin/env python3
"""Load: many sleeping apps, a hundred that crash every second, clients hammering the API.

    python bench/load.py                      # 1,000 + 100 apps for 60 s (issue 9)
    python bench/load.py --sleepers 30 --crashers 10 --duration 5 --json   # the test's short run

While it runs, one client thread asks ``/status/`` in a loop and others ping ``udp`` and
``http`` apps. Checked from the outside only (the children's own start lines, ``/proc``):

* no missed restart: every crasher logs a start about once a second; a gap longer than
  ``--max-gap`` seconds between two starts of one crasher is a missed restart;
* no leaked file descriptor: Patrol's ``/proc/PID/fd`` count after the load is back to
  what it was before it (the same apps running);
* memory flat after warm-up: RSS at the end against RSS after the first quarter;
* API latency: status and ping round trips (median, p99, max).

Every process started is killed by pid at the end (and found again by a marker).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLEEPER = '#!/bin/sh\nexec sleep 86400\n'
CRASHER = '#!/bin/sh\necho "$1 $(date +%s.%N)" >> "$STARTS"\nsleep 1\nexit 3\n'


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def patrol_binary() -> str:
    venv = ROOT / ".venv" / "bin" / "patrol"
    return str(venv) if venv.exists() else shutil.which("patrol") or "patrol"


def write_config(work: Path, args: argparse.Namespace, marker: str) -> Path:
    (work / "sleeper.sh").write_text(SLEEPER)
    (work / "crasher.sh").write_text(CRASHER)
    for script in ("sleeper.sh", "crasher.sh"):
        (work / script).chmod(0o755)
    env = [f"LOAD_MARKER={marker}", f"STARTS={work / 'starts.log'}"]

    def app(keepalive: int, binary: str, *extra: str) -> dict:
        return {"keepalive": keepalive, "name": binary, "binary": binary, "working-directory": str(work),
                "log-directory": "logs", "pid-path": "unused.pid", "env": env, "args": list(extra)}

    apps = {f"s{i}": app(1, "sleeper.sh") for i in range(args.sleepers)}
    # A crasher lives 1 s, right at the default backoff-reset: a few scheduling
    # milliseconds would make its next exit a "quick failure" and start the backoff
    # ladder. Here they count as healthy, so every restart must be immediate and a late
    # one is a missed restart, not backoff.
    crasher = dict(app(1, "crasher.sh"), **{"backoff-reset": 0.5})
    apps.update({f"c{i}": dict(crasher, args=[f"c{i}"]) for i in range(args.crashers)})
    apps.update({f"u{i}": app(4, "sleeper.sh") for i in range(args.ping_apps)})
    apps.update({f"h{i}": app(3, "sleeper.sh") for i in range(args.ping_apps)})
    config = {
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "udp": {"listen": f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"},
        "ping-timeout": 30,
        # histories full within the warm-up, so RSS growth after it would be a leak
        "history": args.history,
        "state-file": str(work / "state.db"),
        "apps": apps,
    }
    path = work / "load.json"
    path.write_text(json.dumps(config))
    return path


def get(url: str, timeout: float = 10) -> tuple[float, dict]:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = json.loads(response.read())
    return time.perf_counter() - began, body


def files_made(logs: Path, app_ids: list[str], timeout: float = 20.0) -> None:
    """Until every app's current-log link exists: the log files of a start burst are
    opened by writer threads after the apps are spawned, so descriptors counted before
    that would make every file look leaked."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(os.path.lexists(logs / f"current.{app_id}.stdout.log") for app_id in app_ids):
            return
        time.sleep(0.05)


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def marked(marker: str) -> list[int]:
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Clients:
    """Status readers and pingers in threads, recording round-trip times."""

    def __init__(self, base: str, udp: tuple[str, int], pings: dict[str, int], stop: threading.Event) -> None:
        self.base, self.udp, self.pings, self.stop = base, udp, pings, stop
        self.status_times: list[float] = []
        self.udp_times: list[float] = []
        self.http_times: list[float] = []
        self.errors = 0

    def status_loop(self) -> None:
        while not self.stop.is_set():
            try:
                self.status_times.append(get(self.base + "/status/")[0])
            except OSError:
                self.errors += 1

    def udp_loop(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            while not self.stop.is_set():
                for app_id, pid in self.pings.items():
                    if not app_id.startswith("u"):
                        continue
                    body = json.dumps({"id": app_id, "group": "app", "ping": True, "pid": pid}).encode()
                    began = time.perf_counter()
                    sock.sendto(body, self.udp)
                    try:
                        sock.recv(4096)
                        self.udp_times.append(time.perf_counter() - began)
                    except OSError:
                        self.errors += 1
                self.stop.wait(0.01)

    def http_loop(self) -> None:
        while not self.stop.is_set():
            for app_id, pid in self.pings.items():
                if not app_id.startswith("h"):
                    continue
                body = json.dumps({"id": app_id, "group": "app", "ping": True, "pid": pid}).encode()
                began = time.perf_counter()
                try:
                    request = urllib.request.Request(self.base + "/api/", data=body, method="POST")
                    urllib.request.urlopen(request, timeout=10).read()
                    self.http_times.append(time.perf_counter() - began)
                except OSError:
                    self.errors += 1
            self.stop.wait(0.02)


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="patrol-load-"))
    marker = f"patrol-load-{os.getpid()}-{time.time_ns()}"
    config_path = write_config(work, args, marker)
    config = json.loads(config_path.read_text())
    base = "http://" + config["http"]["listen"]
    host, port = config["udp"]["listen"].rsplit(":", 1)
    log = open(work / "patrol.log", "wb")
    patrol = subprocess.Popen([patrol_binary(), "run", str(config_path), "--log-format", "json"],
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LOAD_MARKER": marker},
                              start_new_session=True)
    total = args.sleepers + args.crashers + 2 * args.ping_apps
    report: dict = {"apps": total, "sleepers": args.sleepers, "crashers": args.crashers,
                    "duration": args.duration}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _, status = get(base + "/status/")
                up = [a for a, e in status["apps"].items() if e.get("started") and a[0] in "sc"]
                if len(up) >= args.sleepers + args.crashers:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or patrol.poll() is not None:
                raise SystemExit(f"Patrol did not start all apps (log: {work / 'patrol.log'})")
            time.sleep(0.2)
        pings = {f"{g}{i}": patrol.pid for g in "uh" for i in range(args.ping_apps)}  # a live pid
        files_made(work / "logs", [f"s{i}" for i in range(args.sleepers)])
        fds_before = fds(patrol.pid)
        stop = threading.Event()
        clients = Clients(base, (host, int(port)), pings, stop)
        threads = [threading.Thread(target=f) for f in (clients.status_loop, clients.udp_loop, clients.http_loop)]
        for t in threads:
            t.start()
        began = time.monotonic()
        began_wall = time.time()  # restarts are judged from here: cold start is another benchmark
        rss_samples = []
        while time.monotonic() - began < args.duration:
            rss_samples.append((time.monotonic() - began, rss_kb(patrol.pid)))
            time.sleep(min(1.0, args.duration / 10))
        stop.set()
        for t in threads:
            t.join()
        time.sleep(1.5)  # let the last crashers come back before counting descriptors
        fds_after = fds(patrol.pid)
        rss_end = rss_kb(patrol.pid)
        warm = [kb for t, kb in rss_samples if t >= args.duration / 4] or [rss_end]
        starts: dict[str, list[float]] = {}
        for line in (work / "starts.log").read_text().splitlines():
            app_id, stamp = line.split()
            starts.setdefault(app_id, []).append(float(stamp))
        gaps = [b - a for stamps in starts.values() for a, b in zip(stamps, stamps[1:]) if a >= began_wall]
        missed = sum(1 for gap in gaps if gap > args.max_gap)
        missing = [f"c{i}" for i in range(args.crashers) if len(starts.get(f"c{i}", [])) < 2]
        report.update(
            restarts=len(gaps),
            missed_restarts=missed + len(missing),
            max_gap_s=round(max(gaps), 3) if gaps else None,
            median_gap_s=round(statistics.median(gaps), 3) if gaps else None,
            fds_before=fds_before,
            fds_after=fds_after,
            rss_warm_kb=warm[0],
            rss_end_kb=rss_end,
            rss_growth_pct=round((rss_end - warm[0]) / warm[0] * 100, 1),
            status_requests=len(clients.status_times),
            status_p50_ms=round(percentile(clients.status_times, 0.5) * 1000, 1),
            status_p99_ms=round(percentile(clients.status_times, 0.99) * 1000, 1),
            udp_pings=len(clients.udp_times),
            udp_p50_ms=round(percentile(clients.udp_times, 0.5) * 1000, 2),
            udp_p99_ms=round(percentile(clients.udp_times, 0.99) * 1000, 2),
            http_pings=len(clients.http_times),
            http_p50_ms=round(percentile(clients.http_times, 0.5) * 1000, 2),
            http_p99_ms=round(percentile(clients.http_times, 0.99) * 1000, 2),
            client_errors=clients.errors,
            patrol_alive=patrol.poll() is None,
        )
        patrol.send_signal(signal.SIGTERM)
        report["exit_code"] = patrol.wait(60)
        report["left_running"] = len(marked(marker))
        return report
    finally:
        if patrol.poll() is None:
            patrol.kill()
            patrol.wait()
        for pid in marked(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        log.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sleepers", type=int, default=1000)
    parser.add_argument("--crashers", type=int, default=100)
    parser.add_argument("--ping-apps", type=int, default=10, help="udp apps and as many http apps")
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--history", type=int, default=10,
                        help="history records kept per app (crashers fill theirs in the warm-up)")
    parser.add_argument("--max-gap", type=float, default=2.5,
                        help="seconds between two starts of a crasher (it lives 1 s) that count as missed")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    report = run(args)
    if args.json:
        print(json.dumps(report))
    else:
        print("| measure | value |\n|---|---|")
        for key, value in report.items():
            print(f"| {key} | {value} |")
    ok = (report["missed_restarts"] == 0 and report["fds_after"] <= report["fds_before"] + 2
          and report["exit_code"] == 0 and report["left_running"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
