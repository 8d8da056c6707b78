"""Ping throughput of Patrol: UDP and HTTP pings sent by other processes on loopback.

Patrol runs apps kept alive by ``udp`` and ``http`` pings; several :mod:`bench.loadgen`
processes ping them at a fixed rate (open loop) and then as fast as Patrol answers
(closed loop, the capacity). Each generator pings its own share of the apps with its own
pid, as the apps themselves would: the first ping adopts the app as running under that
pid (Patrol does not spawn ping apps during its start-up grace), every later one
refreshes it. A ping is lost when no answer came back (UDP: Patrol
answers every valid ping), the answer was not ``200`` (HTTP), or it could not even be
sent within two seconds of its time (HTTP: every connection was still waiting for
Patrol). The kernel's drop counter of Patrol's UDP socket says whether Patrol was too
slow to read the datagrams.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import procfs
from .daemons import Patrol
from .sessions import Run, Settings

LOADGEN = Path(__file__).with_name("loadgen.py")
HTTP_CONNECTIONS = 4  # per generator process
PING_APPS = 10  # per keepalive


def _load(run: Run, kind: str, rate: float, duration: float, procs: int, ids: list[str]) -> dict[str, Any]:
    """Run ``procs`` generators together; their merged figures and Patrol's CPU."""
    patrol: Patrol = run.daemon  # type: ignore[assignment]
    target = patrol.udp if kind == "udp" else patrol.http
    start_at = time.time() + 1.0  # every generator is up by then
    port = int(target.rpartition(":")[2])
    drops = procfs.udp_drops(port)
    gens = []
    for k in range(procs):
        # each generator pings its own share of the apps: an app sees one pid, as a real one would
        argv = [sys.executable, str(LOADGEN), kind, target, str(rate / procs), str(duration), str(start_at),
                ",".join(ids[k::procs])]
        if kind == "http":
            argv.append(str(HTTP_CONNECTIONS))
        gens.append(subprocess.Popen(argv, stdout=subprocess.PIPE, env=run.work.env(), text=True))
    time.sleep(max(0.0, start_at - time.time()))  # CPU is counted from the common start
    cpu = procfs.cpu_seconds(run.pid)
    results = []
    for gen in gens:
        out, _ = gen.communicate(timeout=duration + 60)
        results.append(json.loads(out))
    cpu = procfs.cpu_seconds(run.pid) - cpu
    sent = sum(r["sent"] for r in results)
    answered = sum(r["answered"] for r in results)
    elapsed = max(r["elapsed"] for r in results) or duration
    merged: dict[str, Any] = {
        "kind": kind, "target_rate": rate, "procs": procs, "duration": duration,
        "sent": sent, "answered": answered, "lost": sent - answered,
        "rate": answered / elapsed, "patrol_cpu_s": cpu,
        "cpu_us_per_ping": cpu / answered * 1e6 if answered else None,
    }
    if kind == "udp":
        merged["socket_drops"] = procfs.udp_drops(port) - drops
    latencies = [r["latency"] for r in results if r.get("latency")]
    if latencies:
        merged["latency_ms"] = {q: max(lat[q] for lat in latencies) * 1000 for q in ("p50", "p99", "max")}
    return merged


def ping_session(make_patrol: Callable[[dict[str, str]], Patrol], settings: Settings, *, duration: float,
                 procs: int, udp_rate: float, http_rate: float, capacity: bool) -> dict[str, Any]:
    """Fixed-rate loads of each kind against one Patrol, then (``capacity``) closed-loop ones."""
    ping_apps = {f"u{i}": "udp" for i in range(PING_APPS)} | {f"h{i}": "http" for i in range(PING_APPS)}
    patrol: Patrol = make_patrol(ping_apps)
    udp_ids = [a for a, k in ping_apps.items() if k == "udp"]
    http_ids = [a for a, k in ping_apps.items() if k == "http"]
    with Run(patrol, settings) as run:
        run.wait_ready(0)  # listening; the first ping of each app adopts it (no child is spawned)
        result = {
            "udp": _load(run, "udp", udp_rate, duration, procs, udp_ids),
            "http": _load(run, "http", http_rate, duration, procs, http_ids),
        }
        if capacity:
            result["udp_max"] = _load(run, "udp", 0, duration, procs, udp_ids)
            result["http_max"] = _load(run, "http", 0, duration, procs, http_ids)
        run.shutdown()
    patrol.work.remove()  # kept for inspection when the session failed
    return result
