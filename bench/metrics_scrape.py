"""What a Prometheus scrape of ``/metrics`` costs Patrol, with 1,000 apps.

    python bench/metrics_scrape.py                  # 1,000 apps, all running /bin/sleep
    python bench/metrics_scrape.py --apps 5000 --running 500 --scrapes 100

Starts a real ``patrol run`` with N apps (``--running`` of them run ``/bin/sleep``: a
running app costs a ``/proc`` read per scrape for its CPU and memory; the others are
disabled), with the loop lag meter of bench/loop_stall.py installed as a plugin, then:

* **first scrape**: the first one also imports ``prometheus_client`` (in a thread).
* **CPU per scrape**: ``--scrapes`` scrapes one after the other over one keep-alive
  connection; Patrol's CPU time (``/proc/PID/stat``, user + system) over them, minus what
  Patrol used over as long a time with nothing to do (ticks, child reaping), divided by
  the number of scrapes: Patrol's time per scrape. The target is <= 20 ms at 1,000 apps.
* **loop stall**: the longest stretch of work the loop did without coming back to its
  timers while being scraped (``max_busy_ms``): no scrape may block the loop longer
  than the 20 ms a whole scrape may take.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loop_stall import Client, free_port, lagmeter_site, stalls, summary, wait_up, write_config  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def scrape_text(client: Client) -> str:
    client.conn.request("GET", "/metrics")
    return client.conn.getresponse().read().decode()


def running(client: Client) -> int:
    text = scrape_text(client)
    return sum(1 for line in text.splitlines() if line.startswith("patrol_item_up{") and line.endswith(" 1.0"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--running", type=int, default=1000, help="apps that run /bin/sleep (default: all)")
    parser.add_argument("--scrapes", type=int, default=50, help="scrapes timed one after the other (default 50)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="patrol-metrics-scrape-"))
    port = free_port()
    config = write_config(work, args.apps, args.running, port)
    lags = work / "lags.txt"
    env = {**os.environ, "PATROL_LAGMETER": str(lags),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(lagmeter_site(work)), os.environ.get("PYTHONPATH")]))}
    with open(work / "patrol.log", "wb") as log:
        patrol = subprocess.Popen([sys.executable, "-m", "patrol", "run", str(config), "--log-format", "json"],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=work, env=env, start_new_session=True)
    result: dict[str, Any] = {"apps": args.apps, "running": args.running, "scrapes": args.scrapes}
    try:
        wait_up(port, "/status/", patrol, work)
        deadline = time.monotonic() + 300
        client = Client(port)
        first, size = client.get("/metrics")
        result["first_scrape_ms"] = round(first * 1000, 1)
        result["answer_bytes"] = size
        while running(client) < args.running:  # every app started, then calm
            if time.monotonic() > deadline:
                raise SystemExit("the apps did not all start")
            time.sleep(0.5)
        time.sleep(2)

        started, cpu = time.time(), cpu_seconds(patrol.pid)
        answers = [client.get("/metrics")[0] for _ in range(args.scrapes)]
        spent, ended = cpu_seconds(patrol.pid) - cpu, time.time()
        idle_from = cpu_seconds(patrol.pid)
        time.sleep(ended - started)
        idle = cpu_seconds(patrol.pid) - idle_from
        result["patrol_cpu_ms_per_scrape"] = round((spent - idle) * 1000 / args.scrapes, 2)
        result["patrol_cpu_ms_idle_same_time"] = round(idle * 1000, 1)
        result["answer_ms"] = summary(answers)
        result["loop_stall"] = stalls(lags, started, ended)
        result["samples"] = sum(1 for line in scrape_text(Client(port)).splitlines() if not line.startswith("#"))
    finally:
        os.killpg(patrol.pid, signal.SIGTERM)
        try:
            patrol.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(patrol.pid, signal.SIGKILL)
            patrol.wait()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
