"""How long big requests keep Patrol's event loop from doing anything else.

    python bench/loop_stall.py                 # 10,000 apps, 5 parallel clients per route
    python bench/loop_stall.py --apps 2000 --duration 5

Starts a real ``patrol run`` with N apps (``--running`` of them run ``/bin/sleep``, the
others are disabled), then, route by route (the dashboard ``/``, the GUI's live state
``/gui/state.json``, ``/status/``, one app's ``/api/``), has ``--clients`` threads
request it over and over for ``--duration`` seconds.

Two figures per route:

* **loop stall**: a plugin installed for the run (a transport, through the same entry
  points as any plugin, started on Patrol's loop) keeps a 1 ms timer
  on Patrol's loop and records how late each one fires (``max_late_ms``) and how much
  CPU time the loop's thread used in between (``max_busy_ms``): the longest stretch of
  work the loop did without coming back to its timers. ``max_busy_ms`` is the figure
  the 50 ms budget is about; lateness also counts time the process waited for a CPU
  (on a busy machine, that is most of it).
* **probe**: one tiny request at a time (``GET /api/?group=app&id=a0`` on its own
  keep-alive connection) and how long each took: what an app's ping would see. It also
  waits behind the steps of the other requests queued before it, and the clients run
  on the same machine (2 CPUs here), so it is larger than the stall.

The same is measured first with nothing else going on (the baseline). Prints one JSON
object.
"""

from __future__ import annotations

import argparse
import http.client
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
from pathlib import Path
from typing import Any

ROUTES = ("/", "/gui/state.json", "/status/", "/api/?group=app&id=a1")
LAGMETER = '''"""Loop lag meter for bench/loop_stall.py: how late a 1 ms timer fires, and how much
CPU the loop's thread used meanwhile (work on the loop, not time spent descheduled)."""
import asyncio, gc, os, time
from patrol import Transport, hookimpl

PATH = os.environ["PATROL_LAGMETER"]


_gc_started = [0.0]


def _gc(phase, info):
    """Garbage collections that took over 2 ms, as lines "gc TIME SECONDS GENERATION"."""
    if phase == "start":
        _gc_started[0] = time.thread_time()
        return
    took = time.thread_time() - _gc_started[0]
    if took > 0.002:
        with open(PATH + ".gc", "a") as f:
            f.write(f"{time.time()} {took} {info['generation']}\\n")


def _arm(loop, due, cpu):
    loop.call_at(due, _fired, loop, due, cpu)


def _fired(loop, due, cpu):
    late, busy = loop.time() - due, time.thread_time() - cpu
    if late > 0.002:
        with open(PATH, "a") as f:
            f.write(f"{time.time()} {late} {busy}\\n")
    _arm(loop, loop.time() + 0.001, time.thread_time())


class LagMeter(Transport):
    """Registered as a transport only to be started on Patrol's loop: an observer of
    patrol_trigger would make every tick build a snapshot of every item."""

    name = "lagmeter"

    async def start(self):
        loop = asyncio.get_running_loop()
        _arm(loop, loop.time() + 0.001, time.thread_time())
        gc.callbacks.append(_gc)

    async def stop(self):
        pass


@hookimpl
def patrol_register_transports(register):
    register(LagMeter)
'''


def lagmeter_site(work: Path) -> Path:
    """The lag meter as an installed plugin (an entry point on PYTHONPATH)."""
    site = work / "site"
    dist = site / "patrol_lagmeter-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: patrol-lagmeter\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[patrol]\nlagmeter = patrol_lagmeter\n")
    (site / "patrol_lagmeter.py").write_text(LAGMETER)
    return site


def stalls(path: Path, start: float, end: float) -> dict[str, Any]:
    """The lag meter's records between two wall-clock times."""
    collections = []
    gc_path = path.with_name(path.name + ".gc")
    if gc_path.exists():
        for line in gc_path.read_text().splitlines():
            at, took, generation = line.split()
            if start <= float(at) <= end:
                collections.append((float(took), int(generation)))
    late, busy = [], []
    if path.exists():
        for line in path.read_text().splitlines():
            at, lag, cpu = (float(x) for x in line.split())
            if start <= at <= end:
                late.append(lag)
                busy.append(cpu)
    return {"late_over_2ms": len(late), "max_late_ms": round(max(late, default=0) * 1000, 1),
            "late_over_50ms": sum(lag > 0.05 for lag in late),
            "max_busy_ms": round(max(busy, default=0) * 1000, 1), "busy_over_50ms": sum(b > 0.05 for b in busy),
            "gc_over_2ms": len(collections), "max_gc_ms": round(max((t for t, _ in collections), default=0) * 1000, 1),
            "full_gcs": sum(g == 2 for _, g in collections)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(work: Path, apps: int, running: int, port: int) -> Path:
    sleep = shutil.which("sleep") or "/bin/sleep"
    config = {
        "http": {"listen": f"127.0.0.1:{port}"},
        "udp": {"listen": f"127.0.0.1:{free_port()}"},
        "state-file": ":memory:",
        "apps": {f"a{i}": {"keepalive": "pid-patrol", "name": f"App {i}", "binary": sleep, "args": ["86400"],
                           "working-directory": str(work), "log-directory": "logs", "pid-path": f"a{i}.pid",
                           "disabled": i >= running}
                 for i in range(apps)},
    }
    path = work / "patrol.json"
    path.write_text(json.dumps(config))
    return path


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str) -> tuple[float, int]:
        start = time.perf_counter()
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}")
        return time.perf_counter() - start, len(body)


def probe(port: int, app: str, stop: threading.Event, every: float = 0.002) -> list[float]:
    client = Client(port)
    latencies = []
    while not stop.is_set():
        latency, _ = client.get(f"/api/?group=app&id={app}")
        latencies.append(latency)
        time.sleep(every)
    return latencies


def load(port: int, path: str, clients: int, duration: float, lags: Path) -> dict[str, Any]:
    """``clients`` threads GET ``path`` for ``duration`` s while the probe runs."""
    started = time.time()
    stop = threading.Event()
    probed: list[float] = []
    answers: list[tuple[float, int]] = []
    errors: list[str] = []

    def hammer() -> None:
        client = Client(port)
        try:
            while not stop.is_set():
                answers.append(client.get(path))
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            errors.append(repr(exc))

    def run_probe() -> None:
        probed.extend(probe(port, "a0", stop))

    threads = [threading.Thread(target=hammer) for _ in range(clients)] + [threading.Thread(target=run_probe)]
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    return {"loop_stall": stalls(lags, started, time.time()), "probe": summary(probed),
            "answers": len(answers), "errors": errors[:3],
            "answer_ms": summary([a for a, _ in answers]), "answer_bytes": answers[0][1] if answers else 0}


def wait_up(port: int, path: str, patrol: subprocess.Popen[bytes], work: Path, timeout: float = 300) -> None:
    """Until Patrol answers ``path`` (it binds late with thousands of apps); exits the
    benchmark when Patrol died or did not come up within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            Client(port).get(path)
            return
        except OSError:
            if patrol.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"patrol did not come up: see {work / 'patrol.log'}")
            time.sleep(0.2)


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(values), "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2), "max_ms": round(ordered[-1] * 1000, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=10_000)
    parser.add_argument("--running", type=int, default=100, help="apps that run /bin/sleep (default 100)")
    parser.add_argument("--clients", type=int, default=5, help="parallel clients per route (default 5)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per route (default 10)")
    parser.add_argument("--routes", default=",".join(ROUTES))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="patrol-loop-stall-"))
    port = free_port()
    config = write_config(work, args.apps, args.running, port)
    log = open(work / "patrol.log", "wb")
    lags = work / "lags.txt"
    env = {**os.environ, "PATROL_LAGMETER": str(lags),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(lagmeter_site(work)), os.environ.get("PYTHONPATH")]))}
    patrol = subprocess.Popen([sys.executable, "-m", "patrol", "run", str(config), "--log-format", "json"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env, start_new_session=True)
    result: dict[str, Any] = {"apps": args.apps, "running": args.running, "clients": args.clients,
                              "duration_s": args.duration, "routes": {}}
    try:
        wait_up(port, "/api/?group=app&id=a0", patrol, work)
        time.sleep(2)  # let the first start settle
        result["routes"]["(baseline: probe alone)"] = load(port, "/api/?group=app&id=a0", 0, args.duration, lags)
        for path in args.routes.split(","):
            result["routes"][path] = load(port, path, args.clients, args.duration, lags)
        routes = [r for name, r in result["routes"].items() if not name.startswith("(")]
        result["worst_loop_busy_ms"] = max(r["loop_stall"]["max_busy_ms"] for r in routes)
        result["worst_loop_late_ms"] = max(r["loop_stall"]["max_late_ms"] for r in routes)
        result["worst_probe_ms"] = max(r["probe"].get("max_ms", 0) for r in routes)
    finally:
        os.killpg(patrol.pid, signal.SIGTERM)
        try:
            patrol.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(patrol.pid, signal.SIGKILL)
            patrol.wait()
        log.close()
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
