"""``patrol logs``: the last lines of apps' current logs, and ``-f`` to follow them.

Read through the HTTP API (``/api/logs``, :mod:`patrol.api.loglines`), never the files:
it works with a token and against a Patrol on another host. Following carries on across
rotation and restarts with every line once. stdout and stderr of an app are merged in
the order Patrol saw their lines arrive (with ``std-merge``, exactly as written); lines
are prefixed with the id (and ``stderr``) when more than one stream or app is shown,
coloured on a terminal.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from patrol.cli.address import EXIT_OK, EXIT_UNREACHABLE, ClientError
from patrol.cli.interrupt import stop_on_ctrl_c
from patrol.cli.remote import Client
from patrol.cli.style import PREFIXES, Style, wanted
from patrol.cli.targets import Target, resolve

POLL = 0.25


class Printer:
    """Prefixes, padded to one width, coloured per app in turn (like docker compose logs)."""

    def __init__(self, targets: list[Target], both: bool, style: Style) -> None:
        self.show = len(targets) > 1 or both
        self.style = style
        self.colours = {t.id: PREFIXES[n % len(PREFIXES)] for n, t in enumerate(targets)}
        self.width = max((len(t.id) + (7 if both else 0) for t in targets), default=0)

    def line(self, item_id: str, stream: str, text: str) -> None:
        if not self.show:
            print(text)
            return
        label = f"{item_id} stderr" if stream == "stderr" else item_id
        print(self.style.paint(f"{label:<{self.width}} |", self.colours.get(item_id, "")), text)


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    targets = resolve(client.status(), args.names or ["all"], "app")
    stream = "stdout" if args.stdout else "stderr" if args.stderr else "both"
    printer = Printer(targets, stream == "both", Style(wanted(sys.stdout)))
    cursors: dict[tuple[str, str], str] = {}
    for target in targets:
        if args.since is not None:
            for name in ("stdout", "stderr") if stream == "both" else (stream,):
                cursors.update(_catch_up(client, args, printer, target.id, name, since=args.since))
        else:
            cursors.update(_tail(client, args, printer, target.id, stream))
    if not args.follow:
        return EXIT_OK
    stop_on_ctrl_c()
    try:
        _follow(client, args, printer, cursors)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _request(args: argparse.Namespace, item_id: str, **fields: Any) -> dict[str, Any]:
    request = {"id": item_id, **fields}
    if args.secret:
        request["secret"] = args.secret
    return request


def _tail(client: Client, args: argparse.Namespace, printer: Printer, item_id: str,
          stream: str) -> dict[tuple[str, str], str]:
    body = client.logs(_request(args, item_id, stream=stream, lines=args.lines))
    names = body.get("streams") or []
    for n, line in enumerate(body.get("lines") or []):
        printer.line(item_id, names[n] if n < len(names) else body.get("stream", stream), line)
    sys.stdout.flush()
    if body.get("cursors"):
        return {(item_id, name): cursor for name, cursor in body["cursors"].items()}
    return {(item_id, body.get("stream", stream)): body["cursor"]}


def _catch_up(client: Client, args: argparse.Namespace, printer: Printer, item_id: str, stream: str,
              since: float) -> dict[tuple[str, str], str]:
    """Everything from the instance running at ``since`` up to now, page by page."""
    body = client.logs(_request(args, item_id, stream=stream, since=since))
    if body.get("stream") == "stdmerge" and stream == "stderr":
        return {}  # one file for both: read once, as stdout
    while True:
        for line in body.get("lines") or []:
            printer.line(item_id, body.get("stream", stream), line)
        if not body.get("lines") and not body.get("more"):
            return {(item_id, body.get("stream", stream)): body["cursor"]}
        body = client.logs(_request(args, item_id, stream=stream, cursor=body["cursor"]))


def _follow(client: Client, args: argparse.Namespace, printer: Printer, cursors: dict[tuple[str, str], str]) -> None:
    unreachable = False
    while True:
        busy = False
        for (item_id, stream), cursor in list(cursors.items()):
            try:
                body = client.logs(_request(args, item_id, stream="stdout" if stream == "stdmerge" else stream,
                                            cursor=cursor))
            except ClientError as exc:
                if exc.code != EXIT_UNREACHABLE:
                    raise
                if not unreachable:
                    print(f"patrol: {exc} (trying again)", file=sys.stderr)
                unreachable = True
                continue
            unreachable = False
            for line in body.get("lines") or []:
                printer.line(item_id, stream, line)
            cursors[(item_id, stream)] = body["cursor"]
            busy = busy or bool(body.get("more"))
        sys.stdout.flush()
        if not busy:
            time.sleep(POLL)
