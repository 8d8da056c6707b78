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

from .pings import KEEP_UP, kept_up


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
    #: how the figure may grow with N: "linear" (a cost: within 2x of linear growth),
    #: "flat" (within 2x of the figure at the small N), "zero" (must stay 0), "info" (no verdict)
    scaling: str = "linear"


def per_round(key: str) -> Callable[[list[dict[str, Any]]], list[float]]:
    return lambda sessions: [float(s[key]) for s in sessions if key in s]


def pooled(key: str) -> Callable[[list[dict[str, Any]]], list[float]]:
    return lambda sessions: [float(v) for s in sessions if key in s for v in s[key]]


def percent(key: str) -> Callable[[list[dict[str, Any]]], list[float]]:
    return lambda sessions: [100 * float(s[key]) for s in sessions if key in s]


#: rows of the comparison table; the session kind is "main" or "respawn"
ROWS: list[tuple[str, Metric]] = [
    ("respawn", Metric("respawn_ms", "respawn: SIGKILL of a child -> new child's own start, median", "ms", pooled("respawn_ms"),
                       scaling="flat")),
    ("respawn", Metric("respawn_ms", "respawn p90", "ms", pooled("respawn_ms"), stat=0.9, scaling="flat")),
    ("main", Metric("cold_start_s", "cold start: launch -> all N children started", "s", per_round("cold_start_s"), digits=2)),
    ("main", Metric("idle_cpu_s", "daemon CPU while idle (utime+stime)", "s", per_round("idle_cpu_s"), digits=2,
                    resolution=0.01)),
    ("main", Metric("idle_wakeups", "daemon wake-ups while idle (context switches)", "", per_round("idle_wakeups"),
                    digits=0, resolution=1)),
    ("main", Metric("rss_mb", "daemon RSS", "MiB", per_round("rss_mb"))),  # (key: rss_mb, as in older runs)
    ("main", Metric("status_ms", "one full status query", "ms", pooled("status_ms"))),
    ("main", Metric("status_kb", "size of that status reply", "kB",
                    lambda ss: [s["status_bytes"] / 1000 for s in ss if "status_bytes" in s], ratio=False, scaling="info")),
    ("main", Metric("shutdown_s", "graceful shutdown: SIGTERM (pm2: pm2 kill) -> daemon exit", "s", per_round("shutdown_s"), digits=2)),
    ("main", Metric("shutdown_left", "children left after graceful shutdown", "", per_round("shutdown_left"), digits=0,
                    ratio=False, scaling="zero")),
    ("respawn", Metric("sigkill_left", "children left after SIGKILL of the daemon", "", per_round("sigkill_left"), digits=0,
                    ratio=False, scaling="info")),
    ("main", Metric("machine_busy", "whole machine busy during the session (anyone; 100% = all CPUs)", "%",
                    percent("machine_busy"), digits=0, ratio=False, scaling="info")),
]
#: how much worse than the scaling rule a figure may be at the big N ("within 2x of linear")
SCALE_SLACK = 2.0


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


def comparison(results: dict[str, Any], suffix: str = "") -> str:
    """The side-by-side table: Patrol first, then each peer with its ratio.

    ``suffix`` "-scale" gives the same table for the sessions at the scale N (pooled
    main and respawn figures of one combined session per daemon and round).
    """
    sessions_of = results["sessions"]
    daemons = [d for d in results["daemons"] if d + suffix in sessions_of and any(sessions_of[d + suffix].values())]
    sizes = results["sizes"]
    header = ["metric"] + [results["labels"][d] for d in daemons]
    rows = []
    for kind, metric in ROWS:
        if suffix:
            n = sizes["scale"]
            pick = lambda d: sessions_of[d + suffix]["main"] + sessions_of[d + suffix]["respawn"]
        else:
            n = sizes["respawn"] if kind == "respawn" else sizes["main"]
            pick = lambda d, kind=kind: sessions_of[d][kind]
        label = f"{metric.label} (N={n})"
        patrol_figure = figure(pick("patrol"), metric) if "patrol" in daemons else None
        row = [label]
        for d in daemons:
            sessions = pick(d)
            text = cell(metric.samples(sessions), metric)
            if d != "patrol" and metric.ratio:
                text += ratio(figure(sessions, metric), patrol_figure, metric.resolution)
            row.append(text)
        if any(c != "-" for c in row[1:]):
            rows.append(row)
    return markdown(header, rows)


def status_notes(results: dict[str, Any]) -> list[str]:
    """What each status query is, and the timed status command of daemons read through one (pm2 jlist)."""
    notes = ["Status query: " + "; ".join(f"{results['labels'][d]}: {results['status_queries'][d]}"
                                          for d in results["daemons"]) + "."]
    for d in results["daemons"]:
        samples = pooled("status_cli_ms")(results["sessions"][d]["main"])
        if samples:
            metric = Metric("status_cli_ms", "", "ms", pooled("status_cli_ms"))
            notes.append(f"{results['labels'][d]}: `pm2 jlist` as typed (node start-up, connection, the same RPC, "
                         f"printing), start to exit: {cell(samples, metric)} (N={results['sizes']['main']}).")
    return notes


def _growth(small: float, large: float, resolution: float) -> float:
    """How many times ``large`` is ``small``; a figure below the resolution counts as the resolution."""
    floor = resolution or 0.0
    small, large = max(small, floor), max(large, floor)
    if small == 0:
        return 1.0 if large == 0 else float("inf")
    return large / small


def scale_verdict(metric: Metric, small: float, large: float, n_growth: float,
                  lower_bound: bool = False) -> tuple[float, str, str]:
    """(growth, the bound it is held to, "ok"/"NO"/"–") for one row of the scale table.

    ``lower_bound``: ``large`` is only known to be at least this (the apps did not all
    start before the deadline), so the row can fail but not pass.
    """
    grew = _growth(small, large, metric.resolution)
    if metric.scaling == "linear":
        bound = SCALE_SLACK * n_growth
    elif metric.scaling == "flat":
        bound = SCALE_SLACK
    elif metric.scaling == "zero":
        return grew, "stays 0", "ok" if large == 0 else "NO"
    else:
        return grew, "–", "–"
    if lower_bound:
        return grew, f"≤ ×{bound:.3g}", "NO" if grew > bound else "unknown"
    return grew, f"≤ ×{bound:.3g}", "ok" if grew <= bound else "NO"


def _scale_rows(results: dict[str, Any]) -> list[tuple[Metric, str, str, str, str, str]]:
    """(metric, small cell, large cell, growth, bound, verdict) for every row of Patrol's scale table."""
    base = results["sessions"]["patrol"]
    big = results["sessions"]["patrol-scale"]
    big_all = big["main"] + big["respawn"]
    failed = [s for s in big_all if s.get("failed")]
    sizes = results["sizes"]
    rows = []
    for kind, metric in ROWS:
        small = figure(base[kind], metric)
        if small is None:
            continue
        n_growth = sizes["scale"] / (sizes["respawn"] if kind == "respawn" else sizes["main"])
        large = figure(big_all, metric)
        if large is None and metric.key == "cold_start_s" and failed:
            # not every app started before the deadline: the cold start is at least the deadline
            at_least = min(s["cold_start_min_s"] for s in failed)
            grew, bound, verdict = scale_verdict(metric, small, at_least, n_growth, lower_bound=True)
            started = ", ".join(f"{s['started']}" for s in failed)
            rows.append((metric, cell(metric.samples(base[kind]), metric),
                         f"> {at_least:g} s ({started} of {sizes['scale']} started)", f"> ×{grew:.2f}", bound, verdict))
            continue
        if large is None:
            if failed and metric.scaling != "info":
                rows.append((metric, cell(metric.samples(base[kind]), metric), "not measured", "", "",
                             "not measured"))
            continue
        grew, bound, verdict = scale_verdict(metric, small, large, n_growth)
        rows.append((metric, cell(metric.samples(base[kind]), metric), cell(metric.samples(big_all), metric),
                     f"×{grew:.2f}", bound, verdict))
    return rows


def scale(results: dict[str, Any]) -> str:
    """Patrol at N and at the scale N: each figure's growth, held to 2x of linear (respawn: of flat)."""
    sizes = results["sizes"]
    header = ["metric (Patrol)", f"N={sizes['main']} (respawn N={sizes['respawn']})", f"N={sizes['scale']}",
              "growth", "bound (2× of linear; respawn 2× of flat)", "verdict"]
    rows = [[metric.label, *cells] for metric, *cells in _scale_rows(results)]
    per_app = rss_per_app(results)
    if per_app is not None:
        rows.append([f"RSS per extra app ((N={sizes['scale']} − N={sizes['main']}) / {sizes['scale'] - sizes['main']})",
                     "", f"{per_app:.1f} KB", "", "≤ 5 KB (issue 18)", "ok" if per_app <= 5 else "NO"])
    return markdown(header, rows)


def memory_per_app(results: dict[str, Any]) -> float | None:
    """Patrol's memory per extra app in KB (KiB) from the memory session (N and 2N apps)."""
    found = results.get("memory")
    if not found or len(found.get("rss_kib", [])) != 2:
        return None
    (small, large), (rss_small, rss_large) = found["n"], found["rss_kib"]
    return (rss_large - rss_small) / (large - small)


def rss_per_app(results: dict[str, Any]) -> float | None:
    """Patrol's memory per extra app in KB: (RSS at the scale N - RSS at N) / the extra apps."""
    sizes = results["sizes"]
    sessions = results["sessions"]
    if "patrol-scale" not in sessions or sizes["scale"] <= sizes["main"]:
        return None
    metric = next(m for k, m in ROWS if m.key == "rss_mb")
    small, large = figure(sessions["patrol"]["main"], metric), figure(sessions["patrol-scale"]["main"], metric)
    if small is None or large is None:
        return None
    return (large - small) * 1024 / (sizes["scale"] - sizes["main"])


def _ping_row(r: dict[str, Any], what: str) -> list[str]:
    offered = f"{r['target_rate']:.0f}/s" if r["target_rate"] else "closed loop"
    lat = r.get("latency_ms")
    gen = r.get("generator_cpu_us_per_ping")
    return [
        f"{r['kind'].upper()} {what}, {r['procs']} processes, {r['duration']:g} s",
        offered, f"{r['rate']:.0f}", str(r["lost"]), str(r.get("socket_drops", "–")),
        f"{lat['p50']:.2f} / {lat['p99']:.2f} ms" if lat else "–",
        f"{r['cpu_us_per_ping']:.0f} µs" if r["cpu_us_per_ping"] else "–",
        f"{gen:.0f} µs" if gen else "–",
        ("yes" if kept_up(r) else "no") if r["target_rate"] else "–",
    ]


def pings(results: dict[str, Any]) -> str:
    """Every ping load of every round: the fixed-rate one, the knee steps, the closed-loop ones."""
    header = ["load (Patrol)", "offered", "answered/s", "lost", "socket drops", "latency p50 / p99",
              "Patrol CPU per ping", "generators' CPU per ping", "kept up"]
    rows = []
    for session in results["sessions"]["patrol"].get("pings", []):
        for kind in ("udp", "http"):
            if kind in session:
                rows.append(_ping_row(session[kind], "pings"))
            for step in sorted(session.get(f"{kind}_steps", []), key=lambda r: r["target_rate"]):
                rows.append(_ping_row(step, "knee step"))
        for key in ("udp_max", "http_max"):
            if key in session:
                rows.append(_ping_row(session[key], "pings"))
    return markdown(header, rows)


def knees(results: dict[str, Any]) -> str:
    """Per round and kind: the highest offered rate Patrol kept up with, the lowest it did not."""
    header = ["pings (Patrol)", f"kept up at (none lost, ≥ {KEEP_UP * 100:.0f} % answered)", "loss from", "knee"]
    rows = []
    for r, session in enumerate(results["sessions"]["patrol"].get("pings", []), 1):
        for kind in ("udp", "http"):
            knee = session.get(f"{kind}_knee")
            if not knee:
                continue
            good, bad = knee["kept_up"], knee["lost_from"]
            if good is None:
                where = f"below {bad:.0f}/s" if bad else "–"
            elif bad is None:
                where = f"above {good:.0f}/s (the highest rate tried)"
            else:
                where = f"between {good:.0f}/s and {bad:.0f}/s"
            rows.append([f"{kind.upper()}, round {r}", f"{good:.0f}/s" if good else "none tried",
                         f"{bad:.0f}/s" if bad else "none tried", where])
    return markdown(header, rows) if rows else ""


#: the offered ping rates the issue's ping targets are stated at
UDP_TARGET = 10000
HTTP_TARGET = 4000


def _ping_target(ping_runs: list[dict[str, Any]], kind: str, target: float, none_lost: bool) -> tuple[str, str]:
    """(measured, verdict) of a ping target over every round's load at the offered target rate."""
    loads = [p[kind] for p in ping_runs if kind in p]
    if not loads:
        return "–", "not measured"
    if any(r["target_rate"] != target for r in loads):
        offered = ", ".join(sorted({f"{r['target_rate']:.0f}/s" for r in loads}))
        return f"offered {offered}", f"not measured at {target:,.0f}/s offered"
    rate = min(r["rate"] for r in loads)
    lost = sum(r["lost"] for r in loads)
    ok = rate >= KEEP_UP * target and (not none_lost or not lost)
    return f"{rate:.0f}/s, {lost} lost", "met" if ok else "MISSED"


def targets(results: dict[str, Any]) -> str:
    """Issue 18's targets, then issue 8's that must not regress, against this run's figures."""
    peers = results["sessions"]
    sessions = peers["patrol"]
    sizes = results["sizes"]

    def fig(kind: str, key: str, stat: float = 0.5, daemon: str = "patrol") -> float | None:
        if daemon not in peers:
            return None
        metric = next(m for k, m in ROWS if k == kind and m.key == key and m.stat == stat)
        return figure(peers[daemon][kind], metric)

    rows: list[list[str]] = []

    def check(issue: str, label: str, value: float | None, limit: float | None, unit: str) -> None:
        if value is None or limit is None:
            rows.append([issue, label, "–", "not measured"])
        else:
            rows.append([issue, label, f"{value:.3g} {unit}".strip(), "met" if value <= limit else "MISSED"])

    idle_limit = round(0.03 * results["idle_seconds"] / 30, 6)  # 0.03 * 30 / 30 is 0.029999999999999995
    check("18", "cold start ≤ 1.0 s", fig("main", "cold_start_s"), 1.0, "s")
    check("18", "GET /status/ median ≤ 8 ms", fig("main", "status_ms"), 8, "ms")
    ping_runs = sessions.get("pings", [])
    rows.append(["18", f"≥ {UDP_TARGET:,} UDP pings/s answered, none lost (at {UDP_TARGET:,}/s offered)",
                 *_ping_target(ping_runs, "udp", UDP_TARGET, none_lost=True)])
    rows.append(["18", f"≥ {HTTP_TARGET:,} HTTP pings/s answered (at {HTTP_TARGET:,}/s offered)",
                 *_ping_target(ping_runs, "http", HTTP_TARGET, none_lost=False)])
    # the issue's MB and KB are this benchmark's MiB and KiB: it quotes the figures the
    # benchmark printed (supervisor's 35.6 "MB" is 35.6 MiB), as top and ps show them
    check("18", "RSS ≤ 40 MB (MiB, as the issue quotes this benchmark)", fig("main", "rss_mb"), 40, "MiB")
    if (per_app_memory := memory_per_app(results)) is not None:
        small, large = results["memory"]["n"]
        check("18", f"RSS per extra app ≤ 5 KB ((N={large} − N={small}) / {large - small}, "
              f"{results['memory']['settle_s']:g} s after the last start)", per_app_memory, 5, "KiB")
    per_app = rss_per_app(results)
    check("18", f"RSS per extra app ≤ 5 KB (N={sizes['main']} → {sizes['scale']})", per_app, 5, "KiB")
    if peers.get("patrol-scale", {}).get("main"):
        rows.append(["18", f"N={sizes['scale']}: every figure within 2× of linear growth (respawn: of flat)",
                     *_scale_target(results)])
    else:
        rows.append(["18", "every figure within 2× of linear growth at the scale N", "–", "not measured"])
    check("8", "respawn median ≤ 10 ms", fig("respawn", "respawn_ms"), 10, "ms")
    check("8", "respawn p90 ≤ 20 ms", fig("respawn", "respawn_ms", 0.9), 20, "ms")
    check("8", "graceful shutdown ≤ 0.4 s", fig("main", "shutdown_s"), 0.4, "s")
    check("8", "no child left after shutdown", fig("main", "shutdown_left"), 0, "")
    check("8", f"idle CPU over {results['idle_seconds']:g} s ≤ {idle_limit:.3g} s", fig("main", "idle_cpu_s"),
          idle_limit, "s")
    check("8", "idle CPU ≤ supervisor's", fig("main", "idle_cpu_s"), fig("main", "idle_cpu_s", daemon="supervisor"), "s")
    header = f"target (this run: N={sizes['main']}, respawn N={sizes['respawn']})"
    if (sizes["main"], sizes["respawn"]) != (500, 100):
        header += "; the issue's targets are for N=500 and respawn N=100"
    return markdown(["issue", header, "measured", "verdict"], rows)


def _scale_target(results: dict[str, Any]) -> tuple[str, str]:
    """(measured, verdict) of "every figure within 2x of linear growth at the scale N"."""
    rows = _scale_rows(results)
    failing = list(dict.fromkeys(m.label.split(":")[0] for m, *_, verdict in rows if verdict == "NO"))
    if failing:
        return "not: " + ", ".join(failing), "MISSED"
    if any(verdict in ("unknown", "not measured") for *_, verdict in rows):
        return "incomplete (not every app started before the deadline)", "not shown"
    return "all rows", "met"
