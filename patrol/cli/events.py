"""``patrol events [-f] [ID...]``: print Patrol's lifecycle events (``GET /events``).

Without ``-f``: the last events Patrol kept (``-n``, default 20), then exit. With
``-f``: those, then each new one as it happens, until interrupted. A broken connection
(Patrol restarting, a network hiccup, a client dropped for reading too slowly) is
reopened where it stopped (``Last-Event-ID``); when Patrol cannot say what happened in
between, a line says events may have been missed.

Standard library only, like the whole client: a plain HTTP stream, read a line at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Iterator

from patrol.cli.address import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, ClientError
from patrol.cli.interrupt import stop_on_ctrl_c

#: seconds between the heartbeats asked for; a stream silent for READ_TIMEOUT is dead
HEARTBEAT = 15
READ_TIMEOUT = 3 * HEARTBEAT + 5
#: the longest wait between two attempts to reopen a broken stream
RETRY_MAX = 5.0


def cmd_events(client: Any, args: argparse.Namespace) -> int:
    if not 0 <= args.lines <= 1024:
        raise ClientError("events: -n must be from 0 to 1024", 2)
    query: list[tuple[str, str]] = [("id", i) for i in args.ids] + [("group", g) for g in args.group or []]
    query += [("event", e) for e in args.event or []]
    query += [("backlog", str(args.lines)), ("heartbeat", str(HEARTBEAT))]
    if args.periodic:
        query.append(("periodic", "1"))
    if not args.follow:
        query.append(("follow", "0"))
    last_id: str | None = None
    delay = 0.5
    if args.follow:
        stop_on_ctrl_c()
    try:
        while True:
            try:
                for event_id, name, data in stream(client, query, last_id):
                    delay = 0.5
                    if event_id:
                        last_id = event_id
                    show(name, data, event_id, args.json)
            except ClientError as exc:
                if not args.follow or exc.code == EXIT_REFUSED:
                    raise
                print(f"patrol: {exc}; retrying", file=sys.stderr, flush=True)
            if not args.follow:
                return EXIT_OK
            time.sleep(delay)  # the stream ended (Patrol stopped) or broke: reopen it
            delay = min(delay * 2, RETRY_MAX)
    except KeyboardInterrupt:
        return EXIT_OK


def stream(client: Any, query: list[tuple[str, str]], last_id: str | None) -> Iterator[tuple[str, str, Any]]:
    """(id, event name, decoded data) of each event of one connection, until it ends."""
    headers = {"Accept": "text/event-stream"}
    if client.token:
        headers["Authorization"] = f"Bearer {client.token}"
    if last_id:
        headers["Last-Event-ID"] = last_id
    url = f"{client.base}/events?{urllib.parse.urlencode(query)}"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=max(client.timeout, READ_TIMEOUT))
    except urllib.error.HTTPError as exc:
        raise ClientError(refusal(exc), EXIT_REFUSED if exc.code < 500 else EXIT_UNREACHABLE) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ClientError(f"cannot reach Patrol at {client.base}: {getattr(exc, 'reason', exc)}",
                          EXIT_UNREACHABLE) from None
    with response:
        if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
            raise ClientError(f"unexpected answer from {url}: is this Patrol?", EXIT_UNREACHABLE)
        event_id, name, data = "", "", []
        try:
            for raw in response:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "id":
                        event_id = value
                    elif field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
                    continue
                if data:
                    yield event_id, name or "message", json.loads("\n".join(data))
                name, data = "", []
        except (OSError, ValueError) as exc:
            raise ClientError(f"the event stream broke: {exc}", EXIT_UNREACHABLE) from None


def refusal(exc: urllib.error.HTTPError) -> str:
    try:
        errors = json.loads(exc.read()).get("errors") or []
    except (ValueError, AttributeError, OSError):
        errors = []
    if exc.code == 401:
        return "this Patrol needs its token: pass --token-file FILE or set $PATROL_TOKEN"
    return f"events refused (HTTP {exc.code}): " + "; ".join(map(str, errors))


def show(name: str, data: Any, event_id: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"event-id": event_id, **data} if isinstance(data, dict) else data), flush=True)
        return
    if name == "stream.reset":
        print(f"-- {data.get('reason', 'events may have been missed')} --", flush=True)
        return
    group, item = data.get("group", ""), data.get("id", "")
    where = f"{group}/{item}" if item else group
    print(f"{data.get('time', '')}  {name:<18} {where:<24} {details(data)}".rstrip(), flush=True)


def details(data: dict[str, Any]) -> str:
    """What the event says beyond its name: the pid, how a run ended, an error."""
    snapshot, record = data.get("snapshot") or {}, data.get("record") or {}
    notes = []
    if record:
        exit_ = record.get("exit-signal") or (f"exit code {record['exit-code']}" if "exit-code" in record else "")
        notes += [f"pid {record['pid']}" if record.get("pid") else "", exit_, record.get("reason", "")]
    elif snapshot.get("pid"):
        notes.append(f"pid {snapshot['pid']}")
    if snapshot.get("state"):
        notes.append(f"now {snapshot['state']}")
    if data.get("error"):
        notes.append(str(data["error"]))
    return ", ".join(n for n in notes if n)
