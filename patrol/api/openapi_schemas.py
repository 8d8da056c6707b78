"""The schemas of the OpenAPI document: requests, and every answer, strictly.

Built from the API's own tables (:mod:`patrol.api.wire`) and the one enum of item
states (:mod:`patrol.plugin.states`), so the document cannot drift from what the API
enforces; answers are described with ``additionalProperties: false`` so a key an answer
carries but the document does not is caught by ``tests/api/test_openapi.py``.
"""

from __future__ import annotations

from typing import Any

from patrol.api.wire import FIELDS, LIMITS, MAX_KEYVALUE_BYTES, MAX_KEYVALUE_DEPTH, UINT32, UINT64
from patrol.plugin import states

#: The UDP transport's datagram limit (``patrol_keepalive_udp.MAX_DATAGRAM``; the
#: kernel does not import plugins, a test checks that both agree).
MAX_DATAGRAM = 2048
APP_STATES = [state.value for state in states.APP_STATES]
SERVICE_STATES = [state.value for state in states.SERVICE_STATES]

#: One line per request field; every key of api.FIELDS must be here.
REQUEST_FIELDS = {
    "id": "App or service id (case-insensitive).",
    "group": "`app`, `apps`, `service` or `services` (case-insensitive).",
    "ping": "A keepalive ping: apps with keepalive `http`/`udp` only, over that transport.",
    "pid": "The pinging app's pid; needs `ping`.",
    "toggle": "1 enable, 2 disable, 3 restart, 4 run-once on, 5 run-once off, 6 enable + run-once on, "
    "7 enable + run-once off; 0 and 8..255 do nothing (as the original).",
    "history": "Accepted and ignored (HTTP always answers with history, UDP never).",
    "keyvalue": f"Merged into the item's key/values (top-level keys overwrite); the result may take at most "
    f"{MAX_KEYVALUE_BYTES} bytes as compact JSON, with arrays and objects at most {MAX_KEYVALUE_DEPTH} levels deep.",
    "keyvalue-replace": "Replace the whole map with `keyvalue` (absent or empty clears it).",
    "secret": "The item's secret, if it has one. Without it, an item with a secret is answered read-only.",
    "cas": "Apply `keyvalue` and `toggle` only if the item's CAS still has this value; 0 = no check.",
    "instances": "Scale a set of instances (an app with `instances` in the config, addressed by its id) to this "
    "many copies: the highest are stopped, missing ones started; kept in the state file.",
}
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", dict: "object"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def field_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _JSON_TYPES[FIELDS[name]]}
    if name in LIMITS:
        schema.update(minimum=0, maximum=LIMITS[name])
    return schema


def request_schema() -> dict[str, Any]:
    """A request object; ``null`` for any field means absent (as Go's decoder)."""
    if set(REQUEST_FIELDS) != set(FIELDS):
        differ = sorted(set(REQUEST_FIELDS) ^ set(FIELDS))
        raise RuntimeError(f"openapi: REQUEST_FIELDS and api.FIELDS differ: {differ}")
    properties = {}
    for name, text in REQUEST_FIELDS.items():
        schema = field_schema(name)
        schema["type"] = [schema["type"], "null"]
        properties[name] = {**schema, "description": text}
    return {
        "type": "object",
        "description": "Every field is optional and `null` means absent. Unknown fields, wrong types and "
        "out-of-range values are refused with 400 and one error per problem, naming the field.",
        "properties": properties,
        "additionalProperties": False,
    }


def _item_properties(group: str, *, history: bool = True) -> dict[str, Any]:
    """What :meth:`patrol.api.handler.Api.render` may put in an item (empty values are left out)."""
    app = group == "app"
    properties: dict[str, Any] = {
        "instance-id": {"type": "string", "minLength": 1, "description": "Id of the running instance."},
        "name": {"type": "string", "minLength": 1},
        "started": ref("Timestamp"),
        "lastseen": ref("Timestamp"),
        "disabled": {"type": "boolean"},
        "restart": {"type": "boolean"},
        "run-once": {"type": "boolean"},
        "keyvalue": ref("KeyValue"),
        "secret": {"type": "boolean", "description": "true if the item has a secret (never the secret)."},
        "cas": ref("Cas"),
        "state": {"enum": APP_STATES if app else SERVICE_STATES},
        "restarts": {"type": "integer", "minimum": 1, "description": "Starts after the first one."},
        "backoff": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds until the next start."},
        "last-reason": {"type": "string", "minLength": 1,
                        "description": "Why the last instance ended (in state `waiting`: what Patrol waits for, e.g. "
                        "`waiting for db: ready`)."},
        "uptime": {"type": "number", "minimum": 0, "description": "Seconds the current instance has run."},
        "ready": {"type": "boolean", "description": "The instance is ready: its readiness probe (or its notify "
                  "keepalive) says so; an item without readiness is ready while it runs."},
        "readiness": ref("ProbeAnswer"),
    }
    if history:
        properties["history"] = {"type": "array", "items": ref("AppRecord" if app else "ServiceRecord"),
                                 "description": "Ended instances, oldest first, at most the config's `history`."}
    if app:
        properties.update({
            "pid": ref("Pid"),
            "last-exit": {"type": "string", "minLength": 1, "examples": ["exit code 1", "killed by SIGKILL"]},
            "fault": {"type": "string", "minLength": 1,
                      "description": "A problem that does not end the instance (e.g. a pid file naming a "
                      "process Patrol may not adopt or signal)."},
            "cpu-percent": {"type": "number", "minimum": 0,
                            "description": "CPU use in percent of one core (not in answers to pings)."},
            "rss-bytes": {"type": "integer", "minimum": 0,
                          "description": "Resident memory (not in answers to pings)."},
            "liveness": ref("ProbeAnswer"),
            "status-text": {"type": "string", "minLength": 1,
                            "description": "The app's own one-line status (sd_notify `STATUS=`)."},
            "instance-of": {"type": "string", "minLength": 1,
                            "description": "A copy of a set of instances: the set's id (which addresses them all)."},
            "instance": {"type": "integer", "minimum": 0, "description": "A copy's number in its set (0-based)."},
        })
    return properties


def _set_answer() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A set of instances (a request with the set's id) *before* the request was applied.",
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "group": {"const": "app"},
            "name": {"type": "string", "minLength": 1},
            "instances": {"type": "integer", "minimum": 0, "description": "How many copies the set has."},
            "items": {"type": "object", "additionalProperties": ref("AppStatus"),
                      "description": "Each copy that exists, by its id, as in `/status/`."},
            "secret": {"type": "boolean"},
            "shutdown": {"type": "boolean"},
            "cas-invalid": {"type": "boolean",
                            "description": "true: nothing was applied (no secret given for a set that has one)."},
            "state-file": ref("StateFile"),
        },
        "required": ["id", "group", "instances", "items", "cas-invalid"],
        "additionalProperties": False,
    }


def _status_entry(group: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"One {group} in `/status/`. Key/values of items with a secret are left out.",
        "properties": _item_properties(group),
        "required": ["cas", "state", "ready"],
        "additionalProperties": False,
    }


def _answer(group: str, *, udp: bool = False) -> dict[str, Any]:
    properties = _item_properties(group, history=not udp)
    if udp:
        del properties["keyvalue"]
    properties.update({
        "id": {"type": "string", "minLength": 1},
        "group": {"const": group},
        "shutdown": {"type": "boolean", "description": "Patrol is shutting down."},
        "cas-invalid": {"type": "boolean",
                        "description": "true: `keyvalue` and `toggle` were not applied (a stale `cas`), or nothing "
                        "was (no secret given for an item that has one)."},
        "state-file": {**ref("StateFile"),
                       "description": "Only when this request changed something that the state file refused: "
                       "the change is applied, but held in memory only until the file takes writes again."},
    })
    if group == "app" and not udp:
        properties.update(_app_details())
    where = "a UDP datagram: compact JSON without `history` and `keyvalue`" if udp else "HTTP"
    return {
        "type": "object",
        "description": f"The {group}'s state *before* the request was applied, over {where}.",
        "properties": properties,
        "required": ["id", "group", "cas", "state", "ready", "cas-invalid"],
        "additionalProperties": False,
    }


def _app_details() -> dict[str, Any]:
    """What an answer about one app adds for a person looking at it (:mod:`patrol.api.details`)."""
    files = {"type": "string", "minLength": 1}
    return {
        "keepalive": {"type": "string", "minLength": 1, "examples": ["pid-patrol", "http"]},
        "binary": {"type": "string", "minLength": 1, "description": "The program Patrol starts."},
        "args": {"type": "array", "items": {"type": "string"},
                 "description": "Its arguments (an app with a secret: only with the secret)."},
        "log-files": {"type": "object", "properties": {"stdout": files, "stderr": files, "stdmerge": files},
                      "additionalProperties": False,
                      "description": "The current instance's log files (an app with a secret: only with the "
                                     "secret)."},
    }


def _record(group: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "instance-id": {"type": "string", "minLength": 1},
        "started": ref("Timestamp"),
        "lastseen": ref("Timestamp"),
        "stopped": ref("Timestamp"),
        "disabled": {"type": "boolean"},
        "restart": {"type": "boolean"},
        "run-once": {"type": "boolean"},
        "shutdown": {"type": "boolean"},
        "keyvalue": ref("KeyValue"),
        "reason": {"type": "string", "minLength": 1, "examples": ["exited", "ping expired", "disabled"]},
    }
    if group == "app":
        properties.update({
            "pid": ref("Pid"),
            "exit-code": {"type": "integer", "minimum": 1, "maximum": 255,
                          "description": "255 when a signal killed it (as the original)."},
            "exit-signal": {"type": "string", "minLength": 1, "examples": ["SIGKILL"]},
        })
    return {
        "type": "object",
        "description": f"One ended instance of a{'n' if group == 'app' else ''} {group}.",
        "properties": properties,
        "required": ["stopped"],
        "additionalProperties": False,
    }


def _by_group(app: str, service: str) -> dict[str, Any]:
    """An app's or a service's answer, told apart by ``group``."""
    return {"oneOf": [ref(app), ref(service)],
            "discriminator": {"propertyName": "group", "mapping": {"app": ref(app)["$ref"],
                                                                   "service": ref(service)["$ref"]}}}


def schemas() -> dict[str, Any]:
    """``components.schemas``: requests, and every answer, strictly (no unknown keys)."""
    return {
        "Request": request_schema(),
        "Timestamp": {"type": "string", "minLength": 1,
                      "description": "In the config's `json-timestamp` layout (a Go layout; RFC 3339 by default)."},
        "Pid": {"type": "integer", "minimum": 1, "maximum": UINT32},
        "Cas": {"type": "integer", "minimum": 1, "maximum": UINT64,
                "description": "The change counter: one request raises it by at most 1; it never decreases."},
        "KeyValue": {"type": "object", "description": "Any JSON values, set by clients."},
        "ProbeAnswer": {
            "type": "object",
            "description": "The last answer of the item's readiness or liveness probe in the current instance.",
            "properties": {
                "ok": {"type": "boolean"},
                "message": {"type": "string", "minLength": 1, "examples": ["HTTP 200", "connection refused"]},
                "at": ref("Timestamp"),
            },
            "required": ["ok", "at"],
            "additionalProperties": False,
        },
        "AppRecord": _record("app"),
        "ServiceRecord": _record("service"),
        "AppStatus": _status_entry("app"),
        "ServiceStatus": _status_entry("service"),
        "AppAnswer": _answer("app"),
        "ServiceAnswer": _answer("service"),
        "SetAnswer": _set_answer(),
        "Answer": {"oneOf": [ref("AppAnswer"), ref("ServiceAnswer"), ref("SetAnswer")]},
        "AppUdpAnswer": _answer("app", udp=True),
        "ServiceUdpAnswer": _answer("service", udp=True),
        "UdpAnswer": _by_group("AppUdpAnswer", "ServiceUdpAnswer"),
        "StateFile": {
            "type": "object",
            "description": "Whether the state file takes writes. While it does not, changes are applied and "
                           "kept in memory, and written when it works again.",
            "properties": {
                "ok": {"type": "boolean"},
                "error": {"type": "string", "minLength": 1, "examples": ["database is locked"]},
                "since": ref("Timestamp"),
            },
            "required": ["ok"],
            "additionalProperties": False,
        },
        "Status": {
            "type": "object",
            "properties": {
                "instance-id": {"type": "string", "minLength": 1, "description": "This Patrol run."},
                "apps": {"type": "object", "additionalProperties": ref("AppStatus")},
                "service": {"type": "object", "additionalProperties": ref("ServiceStatus"),
                            "description": "Services (the original's singular key)."},
                "started": ref("Timestamp"),
                "shutdown": {"type": "boolean"},
                "state-file": {**ref("StateFile"),
                               "description": "(new) Whether the state file takes writes; absent when Patrol "
                                              "keeps no state file."},
            },
            "required": ["apps", "service"],
            "additionalProperties": False,
        },
        "Errors": {
            "type": "object",
            "description": "Every refused request: one message per problem, naming the field and the rule.",
            "properties": {"errors": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}},
            "required": ["errors"],
            "additionalProperties": False,
        },
        "ReloadReport": {
            "type": "object",
            "description": "What a reload did, each entry `app ID` or `service ID`.",
            "properties": {
                key: {"type": "array", "items": {"type": "string", "pattern": "^(app|service) "}}
                for key in ("added", "removed", "changed", "unchanged")
            },
            "required": ["added", "removed", "changed", "unchanged"],
            "additionalProperties": False,
        },
    }
