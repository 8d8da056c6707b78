"""Requests to a set of instances: the set's id addresses every copy at once.

``{"group": "app", "id": "web", "toggle": 3}`` restarts every copy of the set ``web``
(one at a time in ``restart-mode: "rolling"``, which Patrol orchestrates), and
``{"group": "app", "id": "web", "instances": 5}`` scales it. The answer is the set
*before* the request, as for an item: its size and each copy as ``/status/`` shows it.
A set carries the secret of its definition. What only an item has (pings, pids,
key/values, a CAS) is refused, and so is a set over UDP: an answer listing every copy
is far larger than the datagram that asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from patrol.api.wire import Response, error
from patrol.engine.item_state import TOGGLES
from patrol.util.compare import same_secret

if TYPE_CHECKING:
    from patrol.engine.readside import ItemView
    from patrol.engine.supervisor import Supervisor

#: the transports a set may be addressed over (None: a library call)
SET_TRANSPORTS = (None, "http")
#: request fields that only an item has
ITEM_ONLY = ("ping", "pid", "keyvalue", "keyvalue-replace", "cas")

Render = Callable[..., dict[str, Any]]


def handle_set(patrol: "Supervisor", render: Render, req: dict[str, Any], transport: str | None) -> Response | None:
    """Apply a request to the set it names; None when it names no set."""
    set_id = req.get("id", "").lower()
    if set_id not in patrol.sets.records:
        return None
    if transport not in SET_TRANSPORTS:
        return error(f"id: {set_id} is a set of instances, addressed over HTTP only; address one copy "
                     f"({set_id}-0, ...)")
    for field in ITEM_ONLY:
        if req.get(field):
            return error(f"{field}: not for a set of instances; address one copy ({set_id}-0, ...)")
    secret = patrol.config.apps[set_id].secret
    given = req.get("secret", "")
    if secret and given and not same_secret(given, secret):
        return error("Secret Invalid")
    proven = bool(secret) and bool(given)
    body = render_set(patrol, render, set_id, proven=proven)
    if secret and not given:  # may read what anyone may see, changes nothing, and says so
        body["cas-invalid"] = True
        return Response(200, body)
    toggle, instances = req.get("toggle", 0), req.get("instances")
    if instances is not None:
        patrol.sets.scale(set_id, instances)
    if toggle in TOGGLES:
        patrol.sets.toggle(set_id, toggle)
    body["cas-invalid"] = False
    if instances is not None and not patrol.commit():
        body["state-file"] = patrol.writer.status() if patrol.writer is not None else {"ok": True}
    return Response(200, body)


def render_set(patrol: "Supervisor", render: Render, set_id: str, *, proven: bool) -> dict[str, Any]:
    """The set as the API shows it: its id, its size, and each copy as ``/status/`` does."""
    members: list["ItemView"] = list(patrol.sets.members(set_id))
    return {
        "id": set_id,
        "group": "app",
        "name": patrol.config.apps[set_id].name,
        "instances": patrol.sets.size(set_id),
        "items": {runner.id: render(runner, proven=proven, stats=True) for runner in members},
        "secret": bool(patrol.config.apps[set_id].secret),
        "shutdown": patrol.shutting_down,
    }
