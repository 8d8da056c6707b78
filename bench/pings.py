"""Ping throughput of Patrol: UDP and HTTP pings sent by other processes on loopback.

Patrol runs apps kept alive by ``udp`` and ``http`` pings; several :mod:`bench.loadgen`
processes ping them at a fixed rate (open loop), then at other fixed rates to find the
knee (:func:`find_knee`: the offered rate from which Patrol no longer keeps up), and
(``capacity``) as fast as Patrol answers (closed loop). Each generator pings its own share of the apps with its own
pid, as the apps themselves would: the first ping adopts the app as running under that
pid (Patrol does not spawn ping apps during its start-up grace), every later one
refreshes it. A ping is lost when no answer came back (UDP: Patrol
answers every valid ping), the answer was not ``200`` (HTTP), or it could not even be
sent within two seconds of its time (HTTP: every connection was still waiting for
Patrol). The kernel's drop counter of Patrol's UDP socket says whether Patrol was too
slow to read the datagrams.

The generators are Python processes on the same machine: their CPU per ping is recorded
beside Patrol's, so a knee that is the generators' own limit shows as such.
"""

from __future__ import annotations

import json
import math
import resource
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
#: share of the offered rate that must be answered (besides none lost) to count as keeping up
KEEP_UP = 0.98
#: offered rates tried after the target rate, as multiples of it: up while Patrol keeps up ...
KNEE_UP = (1.5, 2.0)
#: ... or down until it does
KNEE_DOWN = (0.75, 0.5, 0.25, 0.1)
#: bisect between the highest rate kept up and the lowest one not, while they are this far apart
KNEE_RESOLUTION = 1.15
KNEE_BISECTIONS = 2


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
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    results = []
    for gen in gens:
        out, _ = gen.communicate(timeout=duration + 60)
        results.append(json.loads(out))
    cpu = procfs.cpu_seconds(run.pid) - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the generators, reaped just now
    gen_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    sent = sum(r["sent"] for r in results)
    answered = sum(r["answered"] for r in results)
    elapsed = max(r["elapsed"] for r in results) or duration
    merged: dict[str, Any] = {
        "kind": kind, "target_rate": rate, "procs": procs, "duration": duration,
        "sent": sent, "answered": answered, "lost": sent - answered,
        "rate": answered / elapsed, "patrol_cpu_s": cpu,
        "cpu_us_per_ping": cpu / answered * 1e6 if answered else None,
        "generator_cpu_s": gen_cpu, "generator_cpu_us_per_ping": gen_cpu / sent * 1e6 if sent else None,
    }
    if kind == "udp":
        merged["socket_drops"] = procfs.udp_drops(port) - drops
    latencies = [r["latency"] for r in results if r.get("latency")]
    if latencies:
        merged["latency_ms"] = {q: max(lat[q] for lat in latencies) * 1000 for q in ("p50", "p99", "max")}
    return merged


def kept_up(result: dict[str, Any]) -> bool:
    """An open-loop load Patrol kept up with: none lost, and (nearly) the offered rate answered."""
    return not result["lost"] and result["rate"] >= KEEP_UP * result["target_rate"]


def _round_rate(rate: float) -> float:
    """Two significant digits: offered rates that read well and repeat across runs."""
    if rate <= 0:
        return rate
    digits = 1 - int(math.floor(math.log10(rate)))
    return float(round(rate, digits))


def knee_of(steps: list[dict[str, Any]]) -> dict[str, float | None]:
    """The highest offered rate kept up, and the lowest one above it that was not."""
    good = max((r["target_rate"] for r in steps if kept_up(r)), default=None)
    bad = min((r["target_rate"] for r in steps if not kept_up(r) and (good is None or r["target_rate"] > good)),
              default=None)
    return {"kept_up": good, "lost_from": bad}


def find_knee(measure: Callable[[float], dict[str, Any]], first: dict[str, Any]) -> list[dict[str, Any]]:
    """Open-loop loads at stepped rates around the target (``first``, already measured).

    Up by :data:`KNEE_UP` while Patrol keeps up, else down by :data:`KNEE_DOWN` until it
    does, then bisection between the highest rate kept up and the lowest one not. The
    knee (:func:`knee_of`) lies between those two; each step is one load of the same
    length on the same Patrol.
    """
    target = first["target_rate"]
    steps = [first]
    factors = KNEE_UP if kept_up(first) else KNEE_DOWN
    for factor in factors:
        step = measure(_round_rate(target * factor))
        steps.append(step)
        if kept_up(step) != kept_up(first):
            break
    for _ in range(KNEE_BISECTIONS):
        knee = knee_of(steps)
        good, bad = knee["kept_up"], knee["lost_from"]
        if good is None or bad is None or bad <= good * KNEE_RESOLUTION:
            break
        steps.append(measure(_round_rate((good + bad) / 2)))
    return steps


def ping_session(make_patrol: Callable[[dict[str, str]], Patrol], settings: Settings, *, duration: float,
                 procs: int, udp_rate: float, http_rate: float, capacity: bool,
                 knee_duration: float = 0) -> dict[str, Any]:
    """Fixed-rate loads of each kind against one Patrol, the knee search (``knee_duration``
    seconds a step, 0 skips it), then (``capacity``) closed-loop loads."""
    ping_apps = {f"u{i}": "udp" for i in range(PING_APPS)} | {f"h{i}": "http" for i in range(PING_APPS)}
    patrol: Patrol = make_patrol(ping_apps)
    udp_ids = [a for a, k in ping_apps.items() if k == "udp"]
    http_ids = [a for a, k in ping_apps.items() if k == "http"]
    with Run(patrol, settings) as run:
        run.wait_ready(0)  # listening; the first ping of each app adopts it (no child is spawned)
        result: dict[str, Any] = {}
        for kind, rate, ids in (("udp", udp_rate, udp_ids), ("http", http_rate, http_ids)):
            result[kind] = _load(run, kind, rate, duration, procs, ids)
            if knee_duration:
                steps = find_knee(lambda r, kind=kind, ids=ids: _load(run, kind, r, knee_duration, procs, ids),
                                  result[kind])
                result[f"{kind}_steps"] = steps[1:]  # the first step is the fixed-rate load above
                result[f"{kind}_knee"] = knee_of(steps)
        if capacity:
            result["udp_max"] = _load(run, "udp", 0, duration, procs, udp_ids)
            result["http_max"] = _load(run, "http", 0, duration, procs, http_ids)
        run.shutdown()
    patrol.work.remove()  # kept for inspection when the session failed
    return result
