"""Client commands of ``patrol``: talk to a running Patrol over its HTTP API.

``status``, ``enable``, ``disable``, ``restart``, ``run-once``, ``history``, ``ping`` and
``reload`` are thin wrappers around ``/status/``, ``/api/`` and ``/-/reload``. They use only the standard library
(urllib): the client starts fast, and no plugin, web framework or broken install of
the daemon's dependencies can break it. Requests that carry a secret are POSTed, so
the secret never appears in a URL (and so in no proxy or access log).

Where Patrol is: ``--url``, else ``http.listen`` of ``--config FILE``, else
``$PATROL_URL``, else the first address of ``$PATROL_HTTP`` (what Patrol gives its
apps), else ``127.0.0.1:8421``.

The token of a Patrol with ``http.auth`` (sent as ``Authorization: Bearer``):
``--token-file FILE``, else ``--token`` (visible to other users in ``ps``), else
``$PATROL_TOKEN_FILE``, else ``$PATROL_TOKEN``, else ``http.auth`` of ``--config FILE``.
A ping of an app with a secret needs no token: the secret is enough.

Exit codes (for scripts): 0 ok; 1 the request was refused (unknown id, wrong or
missing secret, invalid request); 2 usage error; 3 Patrol unreachable (or what
answered is not Patrol's API).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any, Sequence

from patrol.cli import scale
from patrol.cli.address import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, ClientError, base_url, token_of
from patrol.plugin.states import LIVE_STATES, ItemState

#: command -> toggle number of the original API
TOGGLES = {"enable": 1, "disable": 2, "restart": 3}
RUN_ONCE_ON = 6  # enable + run once: "run it once now", also when it was disabled
RUN_ONCE_OFF = 5


def add_commands(sub: Any) -> None:
    """Add the client subcommands to the ``patrol`` parser."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--url", help="Patrol's HTTP address, e.g. http://127.0.0.1:8421")
    where.add_argument("--config", metavar="FILE", help="take the address from http.listen of this config")
    where.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer (default: 10)")
    where.add_argument("--token-file", metavar="FILE",
                       help="file holding Patrol's token, when it has http.auth (default: $PATROL_TOKEN_FILE)")
    where.add_argument("--token", help="Patrol's token (other users can see it in ps: prefer --token-file "
                                       "or $PATROL_TOKEN)")
    item = argparse.ArgumentParser(add_help=False)
    item.add_argument("id", help="the app's or service's id")
    item.add_argument("--group", choices=("app", "service"), default="app", help="default: app")
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument("--secret", default=os.environ.get("PATROL_SECRET", ""),
                        help="the item's secret (default: $PATROL_SECRET; the environment keeps it out of ps)")

    status = sub.add_parser("status", parents=[where], help="show apps and services (a table, or --json)")
    status.add_argument("id", nargs="?", help="show only this app or service")
    status.add_argument("--group", choices=("app", "service"), help="look only in this group")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    for name, what in (("enable", "enable it (Patrol starts it)"), ("disable", "disable it (Patrol stops it)"),
                       ("restart", "restart it")):
        sub.add_parser(name, parents=[where, item, secret], help=what)
    once = sub.add_parser("run-once", parents=[where, item, secret],
                          help="run it once: enable it; when that instance ends it is disabled")
    once.add_argument("--off", action="store_true", help="cancel run-once instead")

    history = sub.add_parser("history", parents=[where, item, secret], help="list the ended instances")
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


def run(args: argparse.Namespace) -> int:
    """Run a client command; returns the exit code."""
    try:
        base = base_url(args.url, args.config)
        return COMMANDS[args.command](Client(base, args.timeout, token_of(args)), args)
    except ClientError as exc:
        print(f"patrol: {exc}", file=sys.stderr)
        return exc.code


# -- talking to it ---------------------------------------------------------------------


class Client:
    """Requests to one Patrol; every failure becomes a :class:`ClientError`."""

    def __init__(self, base: str, timeout: float = 10.0, token: str | None = None) -> None:
        self.base = base
        self.timeout = timeout
        self.token = token

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status/", None)[1]

    def api(self, request: dict[str, Any]) -> dict[str, Any]:
        """POST a request; a refusal (HTTP 4xx with ``errors``) raises ClientError(1)."""
        code, body = self._call("POST", "/api/", request)
        if body.get("errors"):
            what = f"{request.get('group', '')} {request.get('id', '')}".strip()
            raise ClientError(f"{what}: " + "; ".join(map(str, body["errors"])), EXIT_REFUSED)
        return body

    def reload(self) -> dict[str, Any]:
        code, body = self._call("POST", "/-/reload", {})
        if body.get("errors"):
            raise ClientError("reload refused:\n" + "\n".join(map(str, body["errors"])), EXIT_REFUSED)
        return body

    def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        url = self.base + path
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                code, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            code, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach Patrol at {self.base}: {reason}", EXIT_UNREACHABLE) from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ClientError(f"unexpected answer from {url} (HTTP {code}): is this Patrol's API?", EXIT_UNREACHABLE)
        if code == 401:
            hint = ("the token was refused" if self.token else
                    "this Patrol needs its token: pass --token-file FILE or set $PATROL_TOKEN")
            raise ClientError(f"{hint} ({'; '.join(map(str, body.get('errors') or []))})", EXIT_REFUSED)
        if code == 429:
            raise ClientError("; ".join(map(str, body.get("errors") or ["Too Many Requests"])), EXIT_REFUSED)
        return code, body


# -- commands --------------------------------------------------------------------------


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    status = client.status()
    rows = []
    for group, key in (("app", "apps"), ("service", "service")):
        if args.group in (None, group):
            rows += [(group, item_id, entry) for item_id, entry in sorted((status.get(key) or {}).items())]
    if args.id is not None:
        rows = [row for row in rows if row[1] == args.id.lower()]
        if not rows:
            raise ClientError(f"unknown {args.group or 'app or service'}: {args.id}", EXIT_REFUSED)
    if args.json:
        if args.id is not None:
            group, item_id, entry = rows[0]
            print(json.dumps({"id": item_id, "group": group, **entry}, indent=2))
        else:
            print(json.dumps(status, indent=2))
        return EXIT_OK
    print_table(["ID", "GROUP", "STATE", "PID", "UPTIME", "RESTARTS", "CPU", "MEM", "INFO"],
                [status_row(group, item_id, entry) for group, item_id, entry in rows])
    return EXIT_OK


def status_row(group: str, item_id: str, entry: dict[str, Any]) -> list[str]:
    state = entry.get("state") or (ItemState.RUNNING if entry.get("started") else ItemState.STOPPED)
    cpu = entry.get("cpu-percent")
    rss = entry.get("rss-bytes")
    return [
        item_id,
        group,
        state,
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
    if state in LIVE_STATES:
        notes += health_notes(entry)
    else:
        last = entry.get("last-reason") or ""
        if entry.get("last-exit") and entry["last-exit"] not in last:
            last = f"{last} ({entry['last-exit']})" if last else entry["last-exit"]
        if last:
            notes.append(last)
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


def cmd_toggle(client: Client, args: argparse.Namespace) -> int:
    if args.command == "run-once":
        toggle, action = (RUN_ONCE_OFF, "run-once off") if args.off else (RUN_ONCE_ON, "run-once")
    else:
        toggle, action = TOGGLES[args.command], args.command
    request = {"id": args.id, "group": args.group, "toggle": toggle}
    before = secured(client, request, args.secret)
    print(f"{args.group} {before.get('id', args.id)}: {action} requested (it was {scale.state_before(before)})")
    return EXIT_OK


def cmd_history(client: Client, args: argparse.Namespace) -> int:
    body = client.api(with_secret({"id": args.id, "group": args.group}, args.secret))
    records = body.get("history") or []
    if args.json:
        print(json.dumps(records, indent=2))
        return EXIT_OK
    rows = []
    for n, r in enumerate(records, 1):
        exit_ = r.get("exit-signal") or str(r.get("exit-code", 0))
        flags = [k for k in ("disabled", "restart", "run-once", "shutdown") if r.get(k)]
        rows.append([str(n), r.get("instance-id", "")[:8], str(r.get("pid") or "-"), r.get("started", "-"),
                     r.get("stopped", "-"), exit_ if args.group == "app" else "-", r.get("reason", ""),
                     ",".join(flags)])
    print_table(["#", "INSTANCE", "PID", "STARTED", "STOPPED", "EXIT", "REASON", "FLAGS"], rows)
    if not records:
        print(f"({args.group} {args.id} has no ended instances yet)")
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


def with_secret(request: dict[str, Any], secret: str) -> dict[str, Any]:
    return {**request, "secret": secret} if secret else request


def secured(client: Client, request: dict[str, Any], secret: str) -> dict[str, Any]:
    """POST a changing request; an item's secret that was needed and missing is a refusal."""
    body = client.api(with_secret(request, secret))
    if body.get("cas-invalid"):  # we send no cas: only a missing secret makes it so
        raise ClientError(f"{request['group']} {request['id']} has a secret: nothing was changed "
                          "(pass --secret or set PATROL_SECRET)", EXIT_REFUSED)
    return body


# -- formatting ------------------------------------------------------------------------


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def duration(seconds: float) -> str:
    """Like supervisorctl: ``1:02:03``, ``3 days, 4:05:06``."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days} day{'s' if days != 1 else ''}, {clock}" if days else clock


def size(n: int) -> str:
    """Bytes in the units of ``ps``/``top``: ``512B``, ``12.3M``."""
    units, value, i = "BKMG", float(n), 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{n}B" if i == 0 else f"{value:.1f}{units[i]}"


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
    "enable": cmd_toggle,
    "disable": cmd_toggle,
    "restart": cmd_toggle,
    "run-once": cmd_toggle,
    "history": cmd_history,
    "ping": cmd_ping,
    "scale": scale.cmd_scale,
}
