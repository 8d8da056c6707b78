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
import sys
from typing import Any

from patrol.cli import scale
from patrol.cli import events
from patrol.cli.actions import cmd_action, secured, with_secret
from patrol.cli.address import EXIT_OK, EXIT_USAGE, ClientError, base_url, token_of
from patrol.cli.logcmd import cmd_logs
from patrol.cli.remote import Client
from patrol.cli.statusview import cmd_status
from patrol.cli.tables import print_table
from patrol.cli.targets import resolve

#: the answer's deadline when the command has none of its own (actions wait for outcomes longer)
ANSWER_TIMEOUT = 10.0


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
