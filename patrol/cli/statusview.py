"""``patrol status``: the table (problems first, a summary of states), ``--watch``, and
the detail view of one item (like ``systemctl status``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from patrol.cli.address import EXIT_OK
from patrol.cli.interrupt import stop_on_ctrl_c
from patrol.cli.remote import Client
from patrol.cli.style import Style, wanted
from patrol.cli.tables import duration, print_table, size
from patrol.cli.targets import Target, all_items, is_pattern, resolve
from patrol.plugin.states import LIVE_STATES, ItemState

#: the table's order: what needs a look first; states not listed (a newer Patrol's) sit in the middle
RANK = {"given-up": 0, "unready": 1, "backoff": 1, "stopping": 2, "starting": 2, "restarting": 2, "waiting": 3,
        "stopped": 4, "exited": 4, "running": 5, "ready": 5, "disabled": 6}
MIDDLE = 3
DETAIL_LINES = 10
WATCH_EVERY = 2.0


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    style = Style(wanted(sys.stdout))
    if args.watch is not None and not args.json:
        return _watch(client, args, style)
    status = client.status()
    targets = resolve(status, args.names, args.group, wide=("app", "service")) if args.names else \
        [t for t in all_items(status) if args.group in (None, t.group)]
    single = len(args.names) == 1 and not is_pattern(args.names[0].lower()) and len(targets) == 1
    if args.json:
        if single:
            print(json.dumps({"id": targets[0].id, "group": targets[0].group, **targets[0].entry}, indent=2))
        elif args.names:
            print(json.dumps([{"id": t.id, "group": t.group, **t.entry} for t in targets], indent=2))
        else:
            print(json.dumps(status, indent=2))
        return EXIT_OK
    if single:
        return detail(client, targets[0], args, style)
    table(targets, style)
    return EXIT_OK


def table(targets: list[Target], style: Style) -> None:
    rows = sorted(targets, key=lambda t: (RANK.get(state_of(t.entry), MIDDLE), t.group, t.id))
    print_table(["ID", "GROUP", "STATE", "PID", "UPTIME", "RESTARTS", "CPU", "MEM", "INFO"],
                [status_row(t.group, t.id, t.entry, style) for t in rows])
    print(summary(targets, style))


def summary(targets: list[Target], style: Style) -> str:
    """``12 running, 1 backoff, 1 given-up, 2 disabled``: the most urgent first."""
    counts: dict[str, int] = {}
    for t in targets:
        counts[state_of(t.entry)] = counts.get(state_of(t.entry), 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: (RANK.get(kv[0], MIDDLE), kv[0]))
    return ", ".join(style.state(f"{n} {state}", state) for state, n in ordered) or "no apps or services"


def state_of(entry: dict[str, Any]) -> str:
    return str(entry.get("state") or (ItemState.RUNNING if entry.get("started") else ItemState.STOPPED))


def status_row(group: str, item_id: str, entry: dict[str, Any], style: Style | None = None) -> list[str]:
    style = style or Style(False)
    state = state_of(entry)
    cpu = entry.get("cpu-percent")
    rss = entry.get("rss-bytes")
    return [
        item_id,
        group,
        style.state(state, state),
        str(entry["pid"]) if entry.get("pid") else "-",
        duration(entry["uptime"]) if "uptime" in entry else "-",
        str(entry.get("restarts", 0)),
        f"{cpu:.1f}%" if isinstance(cpu, (int, float)) else "-",
        size(rss) if isinstance(rss, int) else "-",
        info(state, entry),
    ]


def info(state: str, entry: dict[str, Any]) -> str:
    notes = []
    if state == ItemState.BACKOFF and entry.get("backoff"):
        notes.append(f"retry in {entry['backoff']:g}s")
    if entry.get("run-once"):
        notes.append("run-once")
    if entry.get("restart"):
        notes.append("restart pending")
    if entry.get("disabled") and state != ItemState.DISABLED:
        notes.append("disabled")
    if state in LIVE_STATES or entry.get("started"):
        notes += health_notes(entry)
        if entry.get("restarts") and entry.get("last-exit"):  # it keeps crashing while it runs again
            notes.append(f"last exit: {entry['last-exit']}")
    else:
        last = entry.get("last-reason") or ""
        if entry.get("last-exit") and entry["last-exit"] not in last:
            last = f"{last} ({entry['last-exit']})" if last else entry["last-exit"]
        if last:
            notes.append(last)
    if entry.get("fault"):
        notes.append(f"fault: {entry['fault']}")
    if entry.get("secret"):
        notes.append("secret")
    return ", ".join(notes)


def health_notes(entry: dict[str, Any]) -> list[str]:
    """A running item's readiness (why not ready), liveness trouble and own status line."""
    notes = []
    for kind in ("readiness", "liveness"):
        probe = entry.get(kind)
        if not isinstance(probe, dict) or probe.get("ok") or not probe.get("message"):
            continue
        if kind == "liveness" or not entry.get("ready", True):
            notes.append(f"{kind}: {probe['message']}")
    if entry.get("status-text"):
        notes.append(str(entry["status-text"]))
    return notes


def detail(client: Client, target: Target, args: argparse.Namespace, style: Style) -> int:
    entry = client.item(target.group, target.id, args.secret) if target.group == "app" else target.entry
    entry = {**target.entry, **entry}
    state = state_of(entry)
    dot = style.state("●", state)
    print(f"{dot} {target.id} - {entry.get('name', '')} ({target.group})")
    since = f" since {entry['started']}" if entry.get("started") else ""
    up = f"; up {duration(entry['uptime'])}" if "uptime" in entry else ""
    reason = entry.get("last-reason") if not entry.get("started") else None
    facts = [("State", style.state(state, state) + since + up + (f" ({reason})" if reason else ""))]
    if entry.get("pid"):
        facts.append(("PID", str(entry["pid"])))
    facts.append(("Restarts", str(entry.get("restarts", 0))))
    if entry.get("fault"):
        facts.append(("Fault", entry["fault"]))
    if entry.get("keepalive"):
        facts.append(("Keepalive", entry["keepalive"]))
    if entry.get("binary"):
        facts.append(("Command", " ".join([entry["binary"], *entry.get("args", [])])))
    for stream, path in (entry.get("log-files") or {}).items():
        facts.append((f"Log ({stream})", path))
    width = max(len(k) for k, _ in facts)
    for key, value in facts:
        print(f"  {key:>{width}}: {value}")
    exits = [r for r in entry.get("history") or []][-3:]
    if exits:
        print("\nLast exits:")
        for record in reversed(exits):
            how = f"killed by {record['exit-signal']}" if record.get("exit-signal") else \
                f"exit code {record.get('exit-code', 0)}" if target.group == "app" else "ended"
            why = f" ({record['reason']})" if record.get("reason") else ""
            print(f"  {record.get('stopped', '?')}: {how}{why}")
    if target.group == "app":
        _last_lines(client, target, args, style)
    return EXIT_OK


def _last_lines(client: Client, target: Target, args: argparse.Namespace, style: Style) -> None:
    request: dict[str, Any] = {"id": target.id, "lines": DETAIL_LINES}
    if args.secret:
        request["secret"] = args.secret
    try:
        body = client.logs(request)
    except Exception as exc:  # noqa: BLE001 - the detail view stands without its log lines
        print(f"\n(no log lines: {exc})")
        return
    lines, streams = body.get("lines") or [], body.get("streams") or []
    print(f"\nLast {DETAIL_LINES} log lines:" if lines else "\nNo log lines yet.")
    for n, line in enumerate(lines):
        mark = style.paint("stderr ", "\x1b[31m") if n < len(streams) and streams[n] == "stderr" else ""
        print(f"  {mark}{line}")


def _watch(client: Client, args: argparse.Namespace, style: Style) -> int:
    """Refresh the table in place every ``--watch`` seconds (until Ctrl-C)."""
    every = args.watch or WATCH_EVERY
    stop_on_ctrl_c()
    try:
        while True:
            status = client.status()
            targets = resolve(status, args.names, args.group, wide=("app", "service")) if args.names else \
                [t for t in all_items(status) if args.group in (None, t.group)]
            if sys.stdout.isatty():
                print("\x1b[H\x1b[2J", end="")
            print(f"Every {every:g} s: patrol status    {time.strftime('%H:%M:%S')}\n")
            table(targets, style)
            sys.stdout.flush()
            time.sleep(every)
    except KeyboardInterrupt:
        return EXIT_OK
