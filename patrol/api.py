"""The transport-neutral API: one function from request to response (spec section 7).

Every transport (HTTP, UDP, a third party's) calls :meth:`Api.handle` with a decoded
JSON object and the transport's name, and frames what comes back. Wire compatibility
with the original: the same field names, toggle numbers, the pre-request snapshot rule,
CAS rules and secret rules. Fixes: every field is type- and range-checked (errors name
the field), secrets are compared in constant time, unknown fields are refused, group
checks happen after lower-casing, a pid-less ping never leaves a stale ``lastseen``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .state import TOGGLES, HistoryRecord
from .timefmt import format_time

if TYPE_CHECKING:
    from .supervisor import Runner, Supervisor

UINT32 = 2**32 - 1
UINT64 = 2**64 - 1
FIELDS = {
    "id": str,
    "group": str,
    "ping": bool,
    "pid": int,
    "toggle": int,
    "history": bool,
    "keyvalue": dict,
    "keyvalue-replace": bool,
    "secret": str,
    "cas": int,
}
LIMITS = {"pid": UINT32, "toggle": 255, "cas": UINT64}
GROUPS = {"app": "app", "apps": "app", "service": "service", "services": "service"}


@dataclass
class Response:
    """What a transport sends back: an HTTP-like status and the JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status < 400


def error(*messages: str, status: int = 400) -> Response:
    return Response(status, {"errors": list(messages)})


def validate_request(request: Any) -> list[str]:
    """Type and range errors of a request, each naming the field."""
    if request is None:
        return []
    if not isinstance(request, dict):
        return [f"request: must be a JSON object (got {type(request).__name__})"]
    problems = []
    for key, value in request.items():
        expected = FIELDS.get(key)
        if expected is None:
            problems.append(f"{key}: unknown field (known: {', '.join(FIELDS)})")
            continue
        if value is None:
            continue  # JSON null = absent, as Go's decoder treats it
        if expected is int:
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{key}: must be an integer (got {_json_type(value)})")
            elif not 0 <= value <= LIMITS[key]:
                problems.append(f"{key}: must be between 0 and {LIMITS[key]} (got {value})")
        elif not isinstance(value, expected):
            problems.append(f"{key}: must be {_json_names[expected]} (got {_json_type(value)})")
    return problems


_json_names = {str: "a string", bool: "true or false", dict: "an object"}


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


class Api:
    def __init__(self, patrol: "Supervisor") -> None:
        self.patrol = patrol

    # -- requests --------------------------------------------------------------------

    def handle(self, request: Any, transport: str | None = None) -> Response:
        """Apply one request; ``transport`` is the name of the transport it came by.

        A ``None`` transport (a library call) accepts pings for any ping keepalive.
        """
        if request is None:
            request = {}  # JSON null is an empty request (-> Unknown Group), as the original
        problems = validate_request(request)
        if problems:
            return error(*problems)
        req = {k: v for k, v in request.items() if v is not None}
        group = GROUPS.get(str(req.get("group", "")).lower())
        if group is None:
            return error("Unknown Group")
        ping, pid = req.get("ping", False), req.get("pid", 0)
        if ping and group == "service":
            return error("Services don't support Ping")
        runner = self.patrol.find(group, str(req.get("id", "")).lower())
        if runner is None:
            return error("Unknown App" if group == "app" else "Unknown Service")
        secret = runner.config.secret
        if secret:
            given = req.get("secret", "")
            if not given:  # may read, changes nothing, and says so
                body = self.render(runner, ids=True)
                body["cas-invalid"] = True
                return Response(200, body)
            if not hmac.compare_digest(given.encode(), secret.encode()):
                return error("Secret Invalid")
        if ping or pid:
            keepalive = getattr(runner, "keepalive", None)
            pingable = keepalive is not None and keepalive.ping_transport is not None
            if ping and not pingable:
                return error("Ping Not Supported")
            if ping and transport is not None and keepalive.ping_transport != transport:  # type: ignore[union-attr]
                return error("Invalid Ping Endpoint")
            if pid and not pingable:
                return error("PID Not Supported")
            if pid and not ping:
                return error("PID Requires Ping")
        body = self.render(runner, ids=True)
        cas = req.get("cas", 0)
        cas_invalid = bool(cas) and cas != runner.state.cas
        toggle = req.get("toggle", 0)
        if not cas_invalid:
            with runner.state.session() as s:
                if req.get("keyvalue-replace"):
                    s.replace_keyvalue(req.get("keyvalue") or {})
                elif req.get("keyvalue"):
                    s.merge_keyvalue(req["keyvalue"])
                if toggle in TOGGLES:
                    s.toggle(toggle)
            if toggle in TOGGLES:
                runner.toggled()
        if ping:
            runner.keepalive.pinged(pid)  # type: ignore[union-attr]
        body["cas-invalid"] = cas_invalid
        return Response(200, _omit_empty(body))

    # -- rendering -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ``/status/`` object (note the original's singular ``service`` key)."""
        body: dict[str, Any] = {
            "instance-id": self.patrol.instance_id,
            "apps": {i: self.render(r) for i, r in self.patrol.apps.items()},
            "service": {i: self.render(r) for i, r in self.patrol.services.items()},
            "started": self._time(self.patrol.started),
            "shutdown": self.patrol.shutting_down,
        }
        return _omit_empty(body, keep=("apps", "service"))

    def snapshot(self, runner: "Runner") -> dict[str, Any]:
        """What events carry: ids and key/values, no history (the original's Snapshot())."""
        return self.render(runner, ids=True, history=False)

    def render(self, runner: "Runner", *, ids: bool = False, history: bool = True, keyvalue: bool = True) -> dict[str, Any]:
        st = runner.state
        is_app = runner.group == "app"
        lastseen = st.lastseen
        if lastseen is None and st.running and is_app and runner.keepalive.ping_transport is None:  # type: ignore[union-attr]
            lastseen = self.patrol.wall()  # the original reports "now" while it runs
        body: dict[str, Any] = {}
        if ids:
            body["id"] = runner.id
        body["instance-id"] = st.instance_id
        if ids:
            body["group"] = runner.group
        body["name"] = runner.config.name
        if is_app:
            body["pid"] = st.pid
        body.update(
            {
                "started": self._time(st.started),
                "lastseen": self._time(lastseen),
                "disabled": st.disabled,
                "restart": st.restart,
                "run-once": st.run_once,
            }
        )
        if ids:
            body["shutdown"] = self.patrol.shutting_down
        if history:
            body["history"] = [self.render_record(r, runner.group) for r in st.history]
        if keyvalue:
            body["keyvalue"] = dict(st.keyvalue)
        body["secret"] = bool(runner.config.secret)
        body["cas"] = st.cas
        # new keys, beside the original ones
        body["state"] = runner.phase
        body["restarts"] = runner.restarts
        if is_app:
            body["backoff"] = round(runner.backoff_delay, 3) if runner.phase == "backoff" else 0  # type: ignore[union-attr]
            last = runner.last_exit  # type: ignore[union-attr]
            if last is not None:
                body["last-exit"] = str(last)
        if runner.last_reason:
            body["last-reason"] = runner.last_reason
        return _omit_empty(body)

    def render_record(self, record: HistoryRecord, group: str) -> dict[str, Any]:
        body: dict[str, Any] = {"instance-id": record.instance_id}
        if group == "app":
            body["pid"] = record.pid
        body.update(
            {
                "started": self._time(record.started),
                "lastseen": self._time(record.lastseen),
                "stopped": self._time(record.stopped),
                "disabled": record.disabled,
                "restart": record.restart,
                "run-once": record.run_once,
                "shutdown": record.shutdown,
            }
        )
        if group == "app":
            body["exit-code"] = record.exit_code
            if record.exit_signal is not None:
                body["exit-signal"] = _signal_name(record.exit_signal)
        body["keyvalue"] = dict(record.keyvalue)
        if record.reason:
            body["reason"] = record.reason
        return _omit_empty(body)

    def _time(self, ts: float | None) -> str:
        return "" if ts is None else format_time(ts, self.patrol.config.json_timestamp)


def _omit_empty(body: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The original's omit-if-empty: false, 0, "", {} and [] are left out."""
    return {k: v for k, v in body.items() if k in keep or (v is not None and v is not False and v != 0 and v != "" and v != {} and v != [])}


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
