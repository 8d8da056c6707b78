"""``enable``/``start``, ``disable``/``stop``, ``restart``, ``run-once``: on several items,
waiting for the outcome.

Every named item is asked at once; then the client watches ``/status/`` until each
reached what was asked (gone, running, running as a new instance) and prints one line
per item: ``web: stopped (SIGKILL after 3.0 s)``, ``web: restarted (pid 4242)``. Exit 1
when any did not within ``--timeout`` seconds, saying why (``web: still starting after
30 s (backing off: exit code 3)``). ``--no-wait`` returns once Patrol took the requests.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from patrol.cli.address import EXIT_OK, EXIT_REFUSED, ClientError
from patrol.cli.remote import Client
from patrol.cli.scale import state_before
from patrol.cli.targets import Target, all_items, find, is_pattern, resolve

#: command -> toggle number of the original API (start and stop are aliases)
TOGGLES = {"enable": 1, "disable": 2, "restart": 3}
ALIASES = {"start": "enable", "stop": "disable"}
RUN_ONCE_ON = 6  # enable + run once: "run it once now", also when it was disabled
RUN_ONCE_OFF = 5
WAIT = 30.0
POLL = 0.2
TRANSIENT = ("starting", "stopping", "restarting")
LABELS = {"backoff": "backing off", "given-up": "given up"}


def cmd_action(client: Client, args: argparse.Namespace) -> int:
    action = ALIASES.get(args.command, args.command)
    if action == "run-once":
        toggle, action = (RUN_ONCE_OFF, "run-once off") if args.off else (RUN_ONCE_ON, "run-once")
    else:
        toggle = TOGGLES[action]
    status = client.status()
    targets = resolve(status, args.names, args.group)
    asked = time.monotonic()  # outcomes say how long they took from the request on
    before: dict[tuple[str, str], dict[str, Any]] = {}
    for set_id in named_sets(status, args.names, args.group):
        # one request for the whole set: Patrol orchestrates it (a restart rolls, one copy at a time)
        body = secured(client, {"id": set_id, "group": "app", "toggle": toggle}, args.secret)
        print(f"app {set_id}: {action} requested (it was {state_before(body)})", flush=True)
        for target in targets:
            if target.entry.get("instance-of") == set_id:
                before[target.key] = target.entry  # its copies' outcomes are waited for below
    for target in targets:
        if target.key in before:
            continue
        body = secured(client, {"id": target.id, "group": target.group, "toggle": toggle}, args.secret)
        before[target.key] = body
        if args.no_wait or toggle in (RUN_ONCE_ON, RUN_ONCE_OFF):
            print(f"{target.id}: {action} requested (it was {body.get('state', 'unknown')})")
    if args.no_wait or toggle in (RUN_ONCE_ON, RUN_ONCE_OFF):
        return EXIT_OK
    return wait(client, targets, action, before, args.timeout or WAIT, asked)


def named_sets(status: dict[str, Any], names: list[str], group: str | None) -> list[str]:
    """The sets of instances named by their own id (not by a glob, and no item has that id)."""
    if group == "service":
        return []
    sets = {str(t.entry.get("instance-of")) for t in all_items(status) if t.entry.get("instance-of")}
    return [name.lower() for name in dict.fromkeys(names) if not is_pattern(name.lower())
            and name.lower() in sets and find(status, "app", name.lower()) is None]


def wait(client: Client, targets: list[Target], action: str, before: dict[tuple[str, str], dict[str, Any]],
         timeout: float, started: float) -> int:
    outcomes: dict[tuple[str, str], str] = {}
    failed: dict[tuple[str, str], str] = {}
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    while True:
        status = client.status()
        elapsed = time.monotonic() - started
        for target in targets:
            if target.key in outcomes or target.key in failed:
                continue
            entry = find(status, target.group, target.id) or {}
            entries[target.key] = entry
            outcome = reached(action, target, before[target.key], entry, elapsed)
            if outcome is not None:
                outcomes[target.key] = outcome
                print(f"{target.id}: {outcome}", flush=True)
            elif action != "disable" and entry.get("state") == "given-up":
                failed[target.key] = f"{target.id}: not running ({explain(entry)})"
        if len(outcomes) + len(failed) == len(targets) or elapsed >= timeout:
            break
        time.sleep(min(POLL, max(0.0, timeout - elapsed)))
    for target in targets:
        if target.key in outcomes:
            continue
        entry = entries.get(target.key, {})
        message = failed.get(target.key) or (f"{target.id}: still {'stopping' if action == 'disable' else 'starting'}"
                                             f" after {timeout:g} s ({explain(entry)})")
        print(message, flush=True)
    return EXIT_OK if len(outcomes) == len(targets) else EXIT_REFUSED


def reached(action: str, target: Target, before: dict[str, Any], entry: dict[str, Any],
            elapsed: float) -> str | None:
    """What happened, once ``entry`` shows the outcome ``action`` asked for; else None."""
    state = str(entry.get("state", ""))
    if state in TRANSIENT:
        return None
    running = bool(entry.get("started"))
    pid = f" (pid {entry['pid']})" if entry.get("pid") else ""
    if action == "disable":
        if running:
            return None
        if not before.get("started"):
            return "stopped (it was not running)"
        record = next((r for r in reversed(entry.get("history") or [])
                       if r.get("instance-id") == before.get("instance-id")), None)
        how = ""
        if record is not None and target.group == "app":
            how = record.get("exit-signal") or f"exit code {record.get('exit-code', 0)}"
            how += " after "
        return f"stopped ({how}{elapsed:.1f} s)"
    if not running:
        return None
    if action == "enable":
        return f"running{pid}" + (" (it was running)" if before.get("started") else "")
    if before.get("started") and entry.get("instance-id") == before.get("instance-id"):
        return None  # restart: the old instance still runs
    return f"restarted{pid}"


def explain(entry: dict[str, Any]) -> str:
    """``backing off: exit code 3``: the state and why, as far as Patrol says."""
    state = str(entry.get("state", "unknown"))
    why = entry.get("last-reason") or entry.get("last-exit") or entry.get("fault") or ""
    return f"{LABELS.get(state, state)}: {why}" if why else LABELS.get(state, state)


def with_secret(request: dict[str, Any], secret: str) -> dict[str, Any]:
    return {**request, "secret": secret} if secret else request


def secured(client: Client, request: dict[str, Any], secret: str) -> dict[str, Any]:
    """POST a changing request; an item's secret that was needed and missing is a refusal."""
    body = client.api(with_secret(request, secret))
    if body.get("cas-invalid"):  # we send no cas: only a missing secret makes it so
        raise ClientError(f"{request['group']} {request['id']} has a secret: nothing was changed "
                          "(pass --secret or set PATROL_SECRET)", EXIT_REFUSED)
    return body
