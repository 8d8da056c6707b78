"""The client commands' arguments: the part of the client every ``patrol`` command needs.

The parser of ``patrol`` lists every command, so building it must not load what only a
client command uses (urllib, http.client, the email parser, the table printers):
``patrol run`` builds the same parser and would otherwise carry all of that for its
whole life. This module imports the standard library's ``argparse`` and the light
:mod:`patrol.cli.scale` only; :mod:`patrol.cli.client` runs the commands.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from datetime import datetime
from typing import Any

from patrol.cli import scale

NAMES_HELP = "ids, set ids, globs ('queue-*') or all"
#: the groups ``patrol events --group`` can choose
EVENT_GROUPS = ("patrol", "app", "service")
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_commands(sub: Any) -> None:
    """Add the client subcommands to the ``patrol`` parser."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--url", help="Patrol's HTTP address, e.g. http://127.0.0.1:8421")
    where.add_argument("--config", metavar="FILE", help="take the address from http.listen of this config")
    where.add_argument("--timeout", type=check_timeout, metavar="S",
                       help="seconds to wait for an answer (default: 10), and actions for their outcome (default: 30)")
    where.add_argument("--token-file", metavar="FILE",
                       help="file holding Patrol's token, when it has http.auth (default: $PATROL_TOKEN_FILE)")
    where.add_argument("--token", help="Patrol's token (other users can see it in ps: prefer --token-file "
                                       "or $PATROL_TOKEN)")
    group = argparse.ArgumentParser(add_help=False)
    group.add_argument("--group", choices=("app", "service"),
                       help="look only in this group (needed for an id that is an app and a service)")
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument("--secret", default=os.environ.get("PATROL_SECRET", ""),
                        help="the item's secret (default: $PATROL_SECRET; the environment keeps it out of ps)")

    status = sub.add_parser("status", parents=[where, group, secret],
                            help="show apps and services: a table, or one item in detail")
    status.add_argument("names", nargs="*", metavar="ID", help=NAMES_HELP + " (one id: the detail view)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--watch", nargs="?", type=check_timeout, const=2.0, metavar="S",
                        help="refresh the table in place every S seconds (default: 2)")

    logs = sub.add_parser("logs", parents=[where, secret], help="show apps' log lines; -f follows them")
    logs.add_argument("names", nargs="*", metavar="ID", help=NAMES_HELP + " (default: every app)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (across restarts)")
    logs.add_argument("-n", "--lines", type=check_lines, default=20, metavar="N",
                      help="how many of the last lines of each app (default: 20)")
    which = logs.add_mutually_exclusive_group()
    which.add_argument("--stdout", action="store_true", help="only stdout")
    which.add_argument("--stderr", action="store_true", help="only stderr")
    logs.add_argument("--since", type=since_time, metavar="TIME",
                      help="from the start of the instance running at TIME (10m, 2h, 1d, or 2026-05-01 12:00)")

    for name, aliases, what in (("enable", ["start"], "enable it: Patrol starts it (waits until it runs)"),
                                ("disable", ["stop"], "disable it: Patrol stops it (waits until it is gone)"),
                                ("restart", [], "restart it (waits until the new instance runs)")):
        action = sub.add_parser(name, aliases=aliases, parents=[where, group, secret], help=what)
        action.add_argument("names", nargs="+", metavar="ID", help=NAMES_HELP)
        action.add_argument("--no-wait", action="store_true", help="return once Patrol took the request")
    once = sub.add_parser("run-once", parents=[where, group, secret],
                          help="run it once: enable it; when that instance ends it is disabled")
    once.add_argument("names", nargs="+", metavar="ID", help=NAMES_HELP)
    once.add_argument("--off", action="store_true", help="cancel run-once instead")
    once.set_defaults(no_wait=True)

    history = sub.add_parser("history", parents=[where, group, secret], help="list the ended instances")
    history.add_argument("id", help="the app's or service's id")
    history.add_argument("--json", action="store_true", help="machine-readable output")

    scale.add_command(sub, where)
    sub.add_parser("reload", parents=[where],
                   help="re-read the config file and apply only what changed (as SIGHUP)")

    ping = sub.add_parser("ping", parents=[where, secret],
                          help="keep an http-keepalive app alive (for shell-script apps)")
    ping.add_argument("id", nargs="?", default=os.environ.get("PATROL_ID"),
                      help="the app's id (default: $PATROL_ID, which Patrol gives its apps)")
    ping.add_argument("--pid", type=int, default=os.getppid(),
                      help="the app's pid (default: the calling process, i.e. your script; 0 = none)")
    ping.add_argument("--json", action="store_true", help="print Patrol's answer")

    completion = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)")
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    sub.add_parser("_ids", parents=[where])  # for the completion scripts: not a command for people
    _add_events(sub, where)


def _add_events(sub: Any, where: argparse.ArgumentParser) -> None:
    events = sub.add_parser("events", parents=[where], help="print lifecycle events (-f: follow them as they happen)")
    events.add_argument("ids", nargs="*", metavar="ID",
                        help="only events of these apps or services (an id, or the id of a set of instances)")
    events.add_argument("-f", "--follow", action="store_true", help="keep printing new events until interrupted")
    events.add_argument("-n", "--lines", type=int, default=20, metavar="N",
                        help="start with the last N events Patrol kept (default 20; 0 = none)")
    events.add_argument("--group", action="append", choices=EVENT_GROUPS, help="only this group (repeatable)")
    events.add_argument("--event", action="append", metavar="NAME", help="only this event, e.g. app.closed (repeatable)")
    events.add_argument("--periodic", action="store_true",
                        help="also the events of every tick and ping (app.running, app.pinged, ...)")
    events.add_argument("--json", action="store_true", help="one JSON object per line (with its event id)")


def check_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds (got {value!r})") from None
    if not 0 < seconds <= 86400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return seconds


def since_time(value: str) -> float:
    """``--since``: ``10m``, ``2h``, ``1d`` ago, or a local time ``2026-05-01 12:00`` (Unix seconds)."""
    match = _RELATIVE.fullmatch(value.strip())
    if match:
        return time.time() - float(match.group(1)) * UNITS[match.group(2)]
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be like 10m, 2h, 1d or 2026-05-01 12:00 (got {value!r})") from None


def check_lines(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 10_000:
        raise argparse.ArgumentTypeError(f"must be a number of lines from 0 to 10000 (got {value!r})")
    return int(value)
