"""Medians, spreads, ratios, and the tables the benchmark prints (Markdown).

Samples of a metric are pooled over the rounds (every respawn, every status query) or
taken once per round (cold start, idle CPU, RSS, shutdown). A cell shows the median and,
when there is more than one sample, the p10-p90 spread; a peer's cell also shows how
many times Patrol's median it is ("x12" = twelve times Patrol's, so Patrol is better
when the ratio is above 1 for every lower-is-better metric).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    values = sorted(values)
    pos = (len(values) - 1) * q
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    #: how a list of sessions becomes the samples of this metric
    samples: Callable[[list[dict[str, Any]]], list[float]]
    #: which statistic the table's main figure is
    stat: float = 0.5
    digits: int = 1
    #: whether "peer / Patrol" means something (lower is better, and not a count of failures)
    ratio: bool = True
    #: smallest non-zero figure the measurement can give (a zero is "below this")
    resolution: float = 0.0


def per_round(key: str) -> Callable[[list[dict[str, Any]]], list[float]]:
    return lambda sessions: [float(s[key]) for s in sessions if key in s]


def pooled(key: str) -> Callable[[list[dict[str, Any]]], list[float]]:
    return lambda sessions: [float(v) for s in sessions if key in s for v in s[key]]


def percent(key: str) -> Callable[[list[dict[str, Any]]], list[float]]:
    return lambda sessions: [100 * float(s[key]) for s in sessions if key in s]


#: rows of the comparison table; the session kind is "main" or "respawn"
ROWS: list[tuple[str, Metric]] = [
    ("respawn", Metric("respawn_ms", "respawn: SIGKILL of a child -> new child's own start, median", "ms", pooled("respawn_ms"))),
    ("respawn", Metric("respawn_ms", "respawn p90", "ms", pooled("respawn_ms"), stat=0.9)),
    ("main", Metric("cold_start_s", "cold start: launch -> all N children started", "s", per_round("cold_start_s"), digits=2)),
    ("main", Metric("idle_cpu_s", "daemon CPU while idle (utime+stime)", "s", per_round("idle_cpu_s"), digits=2,
                    resolution=0.01)),
    ("main", Metric("idle_wakeups", "daemon wake-ups while idle (context switches)", "", per_round("idle_wakeups"),
                    digits=0, resolution=1)),
    ("main", Metric("rss_mb", "daemon RSS", "MB", per_round("rss_mb"))),
    ("main", Metric("status_ms", "one full status query", "ms", pooled("status_ms"))),
    ("main", Metric("status_kb", "size of that status reply", "kB", lambda ss: [s["status_bytes"] / 1000 for s in ss],
                    ratio=False)),
    ("main", Metric("shutdown_s", "graceful shutdown: SIGTERM -> daemon exit", "s", per_round("shutdown_s"), digits=2)),
    ("main", Metric("shutdown_left", "children left after graceful shutdown", "", per_round("shutdown_left"), digits=0,
                    ratio=False)),
    ("respawn", Metric("sigkill_left", "children left after SIGKILL of the daemon", "", per_round("sigkill_left"), digits=0,
                    ratio=False)),
    ("main", Metric("machine_busy", "whole machine busy during the session (anyone; 100% = all CPUs)", "%",
                    percent("machine_busy"), digits=0, ratio=False)),
]


def fmt(value: float, digits: int) -> str:
    if digits == 0:
        return f"{value:.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def cell(samples: list[float], metric: Metric) -> str:
    if not samples:
        return "-"
    main = quantile(samples, metric.stat)
    text = f"{fmt(main, metric.digits)} {metric.unit}".strip()
    if len(samples) > 1 and metric.stat == 0.5:
        text += f" [{fmt(quantile(samples, 0.1), metric.digits)}–{fmt(quantile(samples, 0.9), metric.digits)}]"
    return text


def figure(sessions: list[dict[str, Any]], metric: Metric) -> float | None:
    samples = metric.samples(sessions)
    return quantile(samples, metric.stat) if samples else None


def ratio(peer: float | None, patrol: float | None, resolution: float) -> str:
    if peer is None or patrol is None:
        return ""
    if patrol == 0:  # Patrol below what can be measured: the ratio is a lower bound
        return f" >×{peer / resolution:.3g}" if peer and resolution else ""
    return f" ×{peer / patrol:.3g}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def comparison(results: dict[str, Any]) -> str:
    """The side-by-side table: Patrol first, then each peer with its ratio."""
    daemons = results["daemons"]
    sizes = results["sizes"]
    header = ["metric"] + [results["labels"][d] for d in daemons]
    rows = []
    for kind, metric in ROWS:
        n = sizes["respawn"] if kind == "respawn" else sizes["main"]
        label = f"{metric.label} (N={n})"
        patrol_figure = figure(results["sessions"].get("patrol", {}).get(kind, []), metric)
        row = [label]
        for d in daemons:
            sessions = results["sessions"][d][kind]
            text = cell(metric.samples(sessions), metric)
            if d != "patrol" and metric.ratio:
                text += ratio(figure(sessions, metric), patrol_figure, metric.resolution)
            row.append(text)
        rows.append(row)
    return markdown(header, rows)


def scale(results: dict[str, Any]) -> str:
    """Patrol at N and at the scale N: how each figure grows against the N ratio."""
    base = results["sessions"]["patrol"]
    big = results["sessions"]["patrol-scale"]
    sizes = results["sizes"]
    growth = sizes["scale"] / sizes["main"]
    header = ["metric (Patrol)", f"N={sizes['main']} (respawn N={sizes['respawn']})", f"N={sizes['scale']}",
              "growth", f"linear bound ×{growth:g}"]
    rows = []
    for kind, metric in ROWS:
        small, large = figure(base[kind], metric), figure(big[kind], metric)
        if small is None or large is None:
            continue
        grew = large / small if small else (1.0 if not large else float("inf"))
        bound = growth if kind == "main" else sizes["scale"] / sizes["respawn"]
        rows.append([metric.label, cell(metric.samples(base[kind]), metric), cell(metric.samples(big[kind]), metric),
                     f"×{grew:.2f}", "ok" if grew <= bound * 1.1 else "NO"])
    return markdown(header, rows)


def pings(results: dict[str, Any]) -> str:
    header = ["load (Patrol)", "offered", "answered/s", "lost", "socket drops", "latency p50 / p99",
              "Patrol CPU per ping"]
    rows = []
    for session in results["sessions"]["patrol"].get("pings", []):
        for key in ("udp", "http", "udp_max", "http_max"):
            if key not in session:
                continue
            r = session[key]
            offered = f"{r['target_rate']:.0f}/s" if r["target_rate"] else "closed loop"
            lat = r.get("latency_ms")
            rows.append([
                f"{r['kind'].upper()} pings, {r['procs']} processes, {r['duration']:g} s",
                offered, f"{r['rate']:.0f}", str(r["lost"]), str(r.get("socket_drops", "–")),
                f"{lat['p50']:.2f} / {lat['p99']:.2f} ms" if lat else "–",
                f"{r['cpu_us_per_ping']:.0f} µs" if r["cpu_us_per_ping"] else "–",
            ])
    return markdown(header, rows)


def targets(results: dict[str, Any]) -> str:
    """Each target of the issue against this run's figure."""
    peers = results["sessions"]
    sessions = peers["patrol"]

    def fig(kind: str, key: str, stat: float = 0.5, daemon: str = "patrol") -> float | None:
        if daemon not in peers:
            return None
        metric = next(m for k, m in ROWS if k == kind and m.key == key and m.stat == stat)
        return figure(peers[daemon][kind], metric)

    supervisor_idle = fig("main", "idle_cpu_s", daemon="supervisor")
    ping_runs = sessions.get("pings", [])
    udp = min((p["udp"]["rate"] for p in ping_runs), default=None)
    udp_lost = sum(p["udp"]["lost"] for p in ping_runs)
    http = min((p["http"]["rate"] for p in ping_runs), default=None)
    http_lost = sum(p["http"]["lost"] for p in ping_runs)
    checks = [
        ("respawn median ≤ 10 ms", fig("respawn", "respawn_ms"), 10, "ms"),
        ("respawn p90 ≤ 20 ms", fig("respawn", "respawn_ms", 0.9), 20, "ms"),
        ("cold start ≤ 1.0 s", fig("main", "cold_start_s"), 1.0, "s"),
        ("graceful shutdown ≤ 0.4 s", fig("main", "shutdown_s"), 0.4, "s"),
        ("no child left after shutdown", fig("main", "shutdown_left"), 0, ""),
        (f"idle CPU over {results['idle_seconds']:g} s ≤ {0.03 * results['idle_seconds'] / 30:.3g} s",
         fig("main", "idle_cpu_s"), 0.03 * results["idle_seconds"] / 30, "s"),
        ("idle CPU ≤ supervisor's", fig("main", "idle_cpu_s"), supervisor_idle, "s"),
        ("RSS ≤ 35 MB", fig("main", "rss_mb"), 35, "MB"),
        ("GET /status/ median ≤ 15 ms", fig("main", "status_ms"), 15, "ms"),
    ]
    rows = []
    for label, value, limit, unit in checks:
        if value is None or limit is None:
            rows.append([label, "–", "not measured"])
            continue
        rows.append([label, f"{value:.3g} {unit}".strip(), "met" if value <= limit else "MISSED"])
    if udp is not None:
        rows.append(["≥ 10,000 UDP pings/s, none lost", f"{udp:.0f}/s, {udp_lost} lost",
                     "met" if udp >= 10000 * 0.98 and not udp_lost else "MISSED"])
    if http is not None:
        rows.append(["≥ 2,000 HTTP pings/s, none lost", f"{http:.0f}/s, {http_lost} lost",
                     "met" if http >= 2000 * 0.98 and not http_lost else "MISSED"])
    sizes = results["sizes"]
    header = f"target (this run: N={sizes['main']}, respawn N={sizes['respawn']})"
    if (sizes["main"], sizes["respawn"]) != (500, 100):
        header += "; the issue's targets are for N=500 and respawn N=100"
    return markdown([header, "measured", "verdict"], rows)
