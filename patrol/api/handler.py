"""The transport-neutral API: one function from request to response.

Every transport (HTTP, UDP, a third party's) calls :meth:`Api.handle` with a decoded
JSON object and the transport's name, and frames what comes back. Wire compatibility
with the original: the same field names, toggle numbers, the pre-request snapshot rule,
CAS rules and secret rules. Fixes: every field is type- and range-checked (errors name
the field), secrets are compared in constant time and never echoed, key/values of an
item with a secret are shown only to requests that carry it, unknown fields are
refused, group checks happen after lower-casing, a pid-less ping never leaves a stale
``lastseen``, and one request bumps CAS at most once.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Mapping

from patrol.util.compare import same_secret
from patrol.engine.app_runner import AppRunner
from patrol.engine.item_state import TOGGLES, HistoryRecord
from patrol.plugin.states import ItemState
from patrol.util.steps import Chunks, Steps
from patrol.util.gotime import format_time
from patrol.api.sets import handle_set
from patrol.api.details import app_details, health_fields, instance_fields
from patrol.api.status_items import StatusItems
from patrol.api.counts import RequestCounts
from patrol.api.ping_render import PingRenders
from patrol.api.visibility import visible_keyvalue
from patrol.api.wire import (GROUPS, MAX_KEYVALUE_BYTES, Response, empty, error, omit_empty, pretty, signal_name,
                             validate_request)

if TYPE_CHECKING:
    from patrol.engine.readside import ItemView
    from patrol.engine.supervisor import Runner, Supervisor

#: Units of work (an item, or one of its history records) per step of ``/status/``:
#: about 13 us each, so a step takes under 2 ms (see patrol.util.steps).
STATUS_STEP = 120
BIG_ANSWERS = 2


class Api:
    """Requests in, responses out; the state it changes belongs to the supervisor."""

    def __init__(self, patrol: "Supervisor") -> None:
        self.patrol = patrol
        #: answers that take many steps (``/status/``, the dashboard, the live state)
        #: are built at most BIG_ANSWERS at a time: each holds megabytes until sent, and
        #: every one built at once adds a step to each turn of the loop
        self.big_answers = asyncio.Semaphore(BIG_ANSWERS)
        #: ``/status/``'s items, each encoded once per change
        self.status_items = StatusItems(self)
        self.requests = RequestCounts()  # answers by transport and status, for the metrics
        self.pings = PingRenders(self)  # a ping's answer without history, rendered once per change

    # -- requests --------------------------------------------------------------------

    def handle(self, request: Any, transport: str | None = None, *, history: bool = True) -> Response:
        """Apply one request (see :meth:`_handle`), and count its answer for the metrics."""
        response = self._handle(request, transport, history=history)
        self.requests.count(transport, response.status)
        return response

    def _handle(self, request: Any, transport: str | None, *, history: bool) -> Response:
        """Apply one request; ``transport`` is the name of the transport it came by.

        A ``None`` transport (a library call) accepts pings for any ping keepalive.
        The response body is the item's state *before* the request, as the original answered.
        ``history=False`` leaves the history out of the answer (UDP never sends it, and
        rendering it is most of the cost of a ping's answer).
        """
        if request is None:
            request = {}  # JSON null is an empty request (-> Unknown Group), as the original
        problems = validate_request(request)
        if problems:
            return error(*problems)
        req = {k: v for k, v in request.items() if v is not None} if None in request.values() else request
        group = GROUPS.get(req.get("group", "").lower())
        if group is None:
            return error("Unknown Group")
        ping, pid = req.get("ping", False), req.get("pid", 0)
        if ping and group == "service":
            return error("Services don't support Ping")
        runner = self.patrol.find(group, req.get("id", "").lower())
        if runner is None:
            if group == "app" and (answer := handle_set(self.patrol, self.render, req, transport)) is not None:
                return answer
            return error("Unknown App" if group == "app" else "Unknown Service")
        if "instances" in req:
            return error("instances: only a set of instances (an app with \"instances\" in the config) can be "
                         "scaled; address it by its id")
        secret = runner.config.secret
        if secret:
            given = req.get("secret", "")
            if not given:  # may read what anyone may see, changes nothing, and says so
                body = self.render(runner, ids=True, history=history, proven=False, stats=not ping)
                body["cas-invalid"] = True
                return Response(200, body)
            if not same_secret(given, secret):
                return error("Secret Invalid")
        if ping or pid:
            ping_transport = runner.ping_transport
            if ping and ping_transport is None:
                return error("Ping Not Supported")
            if ping and transport is not None and ping_transport != transport:
                return error("Invalid Ping Endpoint")
            if pid and ping_transport is None:
                return error("PID Not Supported")
            if pid and not ping:
                return error("PID Requires Ping")
        cas = req.get("cas", 0)
        cas_invalid = bool(cas) and cas != runner.state.cas
        keyvalue = req.get("keyvalue") or {}
        if keyvalue and not cas_invalid and (problem := self._keyvalue_problem(runner, req)):
            return error(problem)
        body = (self.pings.render(runner, proven=bool(secret)) if ping and not history
                else self.render(runner, ids=True, history=history, proven=bool(secret), stats=not ping))
        toggle = req.get("toggle", 0) if not cas_invalid else 0
        with runner.state.session() as s:  # one request, one CAS bump
            if not cas_invalid:
                if req.get("keyvalue-replace"):
                    s.replace_keyvalue(keyvalue)
                elif keyvalue:
                    s.merge_keyvalue(keyvalue)
                if toggle in TOGGLES:
                    s.toggle(toggle)
            if ping:
                if isinstance(runner, AppRunner):  # services were refused above
                    runner.pinged(pid)
        if toggle in TOGGLES:
            runner.toggled()
        body["cas-invalid"] = cas_invalid
        if s.changed and not self.patrol.commit():  # on disk before it is answered, if it can be
            body["state-file"] = self.state_file()  # this change is in memory only: say so
        return Response(200, body)

    def _keyvalue_problem(self, runner: "Runner", req: dict[str, Any]) -> str | None:
        merged = dict(req["keyvalue"]) if req.get("keyvalue-replace") else {**runner.state.keyvalue, **req["keyvalue"]}
        size = len(json.dumps(merged, separators=(",", ":")))
        if size > MAX_KEYVALUE_BYTES:
            return f"keyvalue: the key/values would take {size} bytes, more than the limit of {MAX_KEYVALUE_BYTES}"
        return None

    # -- rendering -------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ``/status/`` object (note the original's singular ``service`` key).

        The status page asks for no secret: it shows what a caller without any item's
        secret may see (patrol.api.visibility).
        """
        body: dict[str, Any] = {
            "instance-id": self.patrol.instance_id,
            "apps": {i: self.render(r, proven=False, stats=True) for i, r in self.patrol.apps.items()},
            "service": {i: self.render(r, proven=False) for i, r in self.patrol.services.items()},
            "started": self._time(self.patrol.started),
            "shutdown": self.patrol.shutting_down,
        }
        if self.patrol.writer is not None:
            body["state-file"] = self.state_file()
        return omit_empty(body, keep=("apps", "service"))

    async def status_json(self, steps: Steps | None = None) -> list[bytes]:
        """``/status/`` as the bytes the original sent (TAB-indented JSON, ``<>&``
        escaped, a final newline: joined, byte for byte ``http.dumps(self.status())``),
        in chunks, built in steps that give the loop a turn (patrol.util.steps): with 10,000
        apps the whole answer is seconds of work.
        """
        async with self.big_answers:
            return await self._status_json(steps or Steps(STATUS_STEP))

    async def _status_json(self, steps: Steps) -> list[bytes]:
        out = Chunks()
        first = True

        def field(key: str) -> None:
            nonlocal first
            out.add((b"{" if first else b",") + b"\n\t" + pretty(key).encode() + b": ")
            first = False

        field("instance-id")  # never empty: a uuid
        out.add(pretty(self.patrol.instance_id).encode())
        tables: list[tuple[str, Mapping[str, ItemView], bool]] = [
            ("apps", self.patrol.apps, True), ("service", self.patrol.services, False)]
        for key, table, stats in tables:
            field(key)  # kept even when empty, as status() does
            runners = list(table.items())
            if not runners:
                out.add(b"{}")
                continue
            now = pretty(self._time(self.patrol.wall())).encode()  # "lastseen" of the apps without pings
            await self.status_items.write(runners, stats=stats, now=now, steps=steps, out=out)
            out.add(b"\n\t}")
        self.status_items.forget_others(list(self.patrol.runners()))
        for key, value in (("started", self._time(self.patrol.started)), ("shutdown", self.patrol.shutting_down)):
            if not empty(value):  # the original's omit-if-empty, as status() applies it
                field(key)
                out.add(pretty(value, level=1).encode())
        if self.patrol.writer is not None:
            field("state-file")
            out.add(pretty(self.state_file(), level=1).encode())
        out.add(b"\n}\n")
        return out.done()

    def state_file(self) -> dict[str, Any]:
        """Whether the state file takes writes: ``{"ok": true}``, or why not and since when."""
        status: dict[str, Any] = self.patrol.writer.status() if self.patrol.writer is not None else {"ok": True}
        if "since" in status:
            status["since"] = self._time(status["since"])
        return status

    def snapshot(self, runner: "ItemView") -> dict[str, Any]:
        """What events carry: ids and key/values, no history (the original's Snapshot()),
        as a caller without the item's secret sees it: observers forward events."""
        return self.render(runner, ids=True, history=False, proven=False)

    def render(
        self,
        runner: "ItemView",
        *,
        proven: bool,
        ids: bool = False,
        history: bool = True,
        stats: bool = False,
    ) -> dict[str, Any]:
        """One item as the API shows it to a caller that did (``proven``) or did not
        show the item's secret: patrol.api.visibility decides what that caller sees.

        ``ids`` adds ``id``/``group``/``shutdown`` (API responses; not status entries);
        ``stats`` adds the process's CPU and memory, read from ``/proc`` (not for pings
        and events: they are frequent and nobody reads those numbers there).
        """
        body = self.render_fields(runner, proven=proven, ids=ids, history=history)
        details = None
        if ids and stats and runner.group == "app" and history:  # a request about this app (not a ping) over
            details = app_details(runner, proven=proven)  # HTTP (a UDP datagram stays small): what a person looks for
        body.update(self.live_fields(runner, stats=stats, details=details))
        return body

    def render_fields(self, runner: "ItemView", *, proven: bool, ids: bool = False, history: bool = True,
                      now: str | None = None) -> dict[str, Any]:
        """What :meth:`render` shows but the fields that change with time alone
        (:meth:`live_fields`); ``now`` stands for the ``lastseen`` of a running app
        without pings (the original reports the current time), when given."""
        st = runner.state
        is_app = runner.group == "app"
        lastseen: float | str | None = st.lastseen
        if lastseen is None and st.running and is_app and runner.ping_transport is None:
            lastseen = self.patrol.wall() if now is None else now  # the original reports "now" while it runs
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
                "lastseen": lastseen if isinstance(lastseen, str) else self._time(lastseen),
                "disabled": st.disabled,
                "restart": st.restart,
                "run-once": st.run_once,
            }
        )
        if ids:
            body["shutdown"] = self.patrol.shutting_down
        if history:
            body["history"] = [self.render_record(r, runner, proven=proven) for r in st.history]
        keyvalue = visible_keyvalue(runner, st.keyvalue, proven=proven)
        if keyvalue is not None:
            body["keyvalue"] = keyvalue
        body["secret"] = bool(runner.config.secret)
        body["cas"] = st.cas
        # new keys, beside the original ones
        phase = runner.phase
        body["state"] = phase.value
        body["restarts"] = runner.restarts
        body["backoff"] = round(runner.backoff_delay, 3) if phase == ItemState.BACKOFF else 0
        if is_app:
            last = runner.last_exit
            if last is not None:
                body["last-exit"] = str(last)
        if runner.last_reason:
            body["last-reason"] = runner.last_reason
        if is_app and runner.fault_message:
            body["fault"] = runner.fault_message
        return omit_empty(body)

    def live_fields(self, runner: "ItemView", *, stats: bool, details: dict[str, Any] | None = None) -> dict[str, Any]:
        """The fields that change without a change session, written last: ``uptime``,
        readiness and the probes' answers (:func:`patrol.api.details.health_fields`), ``details`` when given
        (an API answer about one app), and with ``stats`` the process's ``cpu-percent``
        and ``rss-bytes``."""
        st = runner.state
        body: dict[str, Any] = {}
        if st.started is not None:  # kept even when 0: "known and zero" is not "unknown"
            body["uptime"] = round(max(0.0, self.patrol.wall() - st.started), 1)
        body.update(health_fields(runner, self._time))
        body.update(instance_fields(runner))
        if details:
            body.update(details)
        if stats and st.pid and runner.group == "app":
            usage = self.patrol.cpu.usage(st.pid)
            if usage is not None:
                body.update({"cpu-percent": usage.cpu_percent, "rss-bytes": usage.rss})
        return body

    def render_record(self, record: HistoryRecord, runner: "ItemView", *, proven: bool) -> dict[str, Any]:
        """One history record of ``runner``, as a caller that did (``proven``) or did
        not show the item's secret may see it."""
        group = runner.group
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
                body["exit-signal"] = signal_name(record.exit_signal)
        keyvalue = visible_keyvalue(runner, record.keyvalue, proven=proven)
        if keyvalue is not None:
            body["keyvalue"] = keyvalue
        if record.reason:
            body["reason"] = record.reason
        return omit_empty(body)

    def _time(self, ts: float | None) -> str:
        return "" if ts is None else format_time(ts, self.patrol.config.json_timestamp)


