"""Client commands of ``patrol``: talk to a running Patrol over its HTTP API.

``status``, ``logs``, ``enable``/``start``, ``disable``/``stop``, ``restart``,
``run-once``, ``history``, ``ping``, ``reload``, ``events`` and ``completion`` work through
``/status/``, ``/api/``, ``/api/logs``, ``/-/reload`` and ``/events`` (:mod:`patrol.cli.events`).
They use only the standard library (urllib): the client starts fast, and no plugin, web framework or broken install
of the daemon's dependencies can break it. Requests that carry a secret are POSTed, so
the secret never appears in a URL (and so in no proxy or access log). Actions and
``status``/``logs`` take several ids, set ids, globs and ``all`` (:mod:`patrol.cli.targets`);
actions wait for the outcome (:mod:`patrol.cli.actions`).

Where Patrol is: ``--url``, else ``http.listen`` of ``--config FILE``, else
``$PATROL_URL``, else the first address of ``$PATROL_HTTP`` (what Patrol gives its
apps), else ``127.0.0.1:8421``.

The token of a Patrol with ``http.auth`` (sent as ``Authorization: Bearer``):
``--token-file FILE``, else ``--token`` (visible to other users in ``ps``), else
``$PATROL_TOKEN_FILE``, else ``$PATROL_TOKEN``, else ``http.auth`` of ``--config FILE``.
A ping of an app with a secret needs no token: the secret is enough.

Exit codes (for scripts): 0 ok; 1 the request was refused (unknown id, wrong or
missing secret, invalid request) or an action's outcome was not reached in time; 2
usage error; 3 Patrol unreachable (or what answered is not Patrol's API).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from patrol.cli import scale
from patrol.cli import events
from patrol.cli.actions import check_timeout, cmd_action, secured, with_secret
from patrol.cli.address import EXIT_OK, EXIT_USAGE, ClientError, base_url, token_of
from patrol.cli.logcmd import check_lines, cmd_logs, since_time
from patrol.cli.remote import Client
from patrol.cli.statusview import cmd_status
from patrol.cli.tables import print_table
from patrol.cli.targets import resolve

#: the answer's deadline when the command has none of its own (actions wait for outcomes longer)
ANSWER_TIMEOUT = 10.0
NAMES_HELP = "ids, set ids, globs ('queue-*') or all"


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
    events.add_command(sub, where)


def run(args: argparse.Namespace) -> int:
    """Run a client command; returns the exit code."""
    if args.command == "_ids":
        from patrol.cli.completion import cmd_ids

        return cmd_ids(args)
    try:
        base = base_url(args.url, args.config)
        timeout = min(args.timeout or ANSWER_TIMEOUT, ANSWER_TIMEOUT)
        return COMMANDS[args.command](Client(base, timeout, token_of(args)), args)
    except ClientError as exc:
        print(f"patrol: {exc}", file=sys.stderr)
        return exc.code


def cmd_history(client: Client, args: argparse.Namespace) -> int:
    target = resolve(client.status(), [args.id], args.group, wide=())[0]
    body = client.api(with_secret({"id": target.id, "group": target.group}, args.secret))
    records = body.get("history") or []
    if args.json:
        print(json.dumps(records, indent=2))
        return EXIT_OK
    rows = []
    for n, r in enumerate(records, 1):
        exit_ = r.get("exit-signal") or str(r.get("exit-code", 0))
        flags = [k for k in ("disabled", "restart", "run-once", "shutdown") if r.get(k)]
        rows.append([str(n), r.get("instance-id", "")[:8], str(r.get("pid") or "-"), r.get("started", "-"),
                     r.get("stopped", "-"), exit_ if target.group == "app" else "-", r.get("reason", ""),
                     ",".join(flags)])
    print_table(["#", "INSTANCE", "PID", "STARTED", "STOPPED", "EXIT", "REASON", "FLAGS"], rows)
    if not records:
        print(f"({target.group} {target.id} has no ended instances yet)")
    return EXIT_OK


def cmd_ping(client: Client, args: argparse.Namespace) -> int:
    if not args.id:
        raise ClientError("ping: give the app's id (or run it where $PATROL_ID is set)", EXIT_USAGE)
    if args.pid < 0:
        raise ClientError("ping: --pid must be 0 or a process id", EXIT_USAGE)
    request: dict[str, Any] = {"id": args.id, "group": "app", "ping": True}
    if args.pid:
        request["pid"] = args.pid
    body = secured(client, request, args.secret)
    if args.json:
        print(json.dumps(body, indent=2))
    return EXIT_OK


def cmd_reload(client: Client, args: argparse.Namespace) -> int:
    result = client.reload()
    for what in ("added", "removed", "changed"):
        for item in result.get(what, []):
            print(f"{what:<8} {item}")
    print(f"unchanged: {len(result.get('unchanged', []))}")
    return EXIT_OK


COMMANDS = {
    "reload": cmd_reload,
    "status": cmd_status,
    "logs": cmd_logs,
    "enable": cmd_action,
    "start": cmd_action,
    "disable": cmd_action,
    "stop": cmd_action,
    "restart": cmd_action,
    "run-once": cmd_action,
    "history": cmd_history,
    "ping": cmd_ping,
    "scale": scale.cmd_scale,
    "events": events.cmd_events,
}
