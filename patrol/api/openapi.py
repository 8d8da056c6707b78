"""The OpenAPI 3.1 document of Patrol's JSON API, served at ``/openapi.json``.

Clients generate code from it and tests validate real answers against it, so it is
built from the same constants the API enforces (:data:`patrol.api.FIELDS` and
:data:`~patrol.api.LIMITS`, :data:`patrol.http.QUERY_FIELDS` and
:data:`~patrol.http.MAX_BODY`): a field added to the API without a description here
fails at build time instead of going undocumented. Answers are described strictly
(``additionalProperties: false``) so a key that appears in an answer but not here is
caught by the test that keeps this document true (``tests/test_openapi.py``).

OpenAPI has no notion of UDP; the UDP transport is described in the ``x-udp``
extension at the top level, with schemas in ``components`` like everything else.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from patrol import __version__
from patrol.api.wire import (FIELDS, LIMITS, MAX_BODY, MAX_KEYVALUE_BYTES, MAX_KEYVALUE_DEPTH, QUERY_FIELDS,
                             SESSION_COOKIE, UINT32, UINT64)

#: The UDP transport's datagram limit (``patrol_keepalive_udp.MAX_DATAGRAM``; the
#: kernel does not import plugins, a test checks that both agree).
MAX_DATAGRAM = 2048
APP_STATES = ["running", "starting", "stopping", "stopped", "waiting", "disabled", "backoff", "given-up"]
SERVICE_STATES = ["running", "starting", "stopping", "restarting", "stopped", "disabled", "backoff"]

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
}
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", dict: "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _field_schema(name: str) -> dict[str, Any]:
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
        schema = _field_schema(name)
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
    """What :meth:`patrol.api.Api.render` may put in an item (empty values are left out)."""
    app = group == "app"
    properties: dict[str, Any] = {
        "instance-id": {"type": "string", "minLength": 1, "description": "Id of the running instance."},
        "name": {"type": "string", "minLength": 1},
        "started": _ref("Timestamp"),
        "lastseen": _ref("Timestamp"),
        "disabled": {"type": "boolean"},
        "restart": {"type": "boolean"},
        "run-once": {"type": "boolean"},
        "keyvalue": _ref("KeyValue"),
        "secret": {"type": "boolean", "description": "true if the item has a secret (never the secret)."},
        "cas": _ref("Cas"),
        "state": {"enum": APP_STATES if app else SERVICE_STATES},
        "restarts": {"type": "integer", "minimum": 1, "description": "Starts after the first one."},
        "backoff": {"type": "number", "exclusiveMinimum": 0, "description": "Seconds until the next start."},
        "last-reason": {"type": "string", "minLength": 1,
                        "description": "Why the last instance ended (in state `waiting`: what Patrol waits for)."},
        "uptime": {"type": "number", "minimum": 0, "description": "Seconds the current instance has run."},
    }
    if history:
        properties["history"] = {"type": "array", "items": _ref("AppRecord" if app else "ServiceRecord"),
                                 "description": "Ended instances, oldest first, at most the config's `history`."}
    if app:
        properties.update({
            "pid": _ref("Pid"),
            "last-exit": {"type": "string", "minLength": 1, "examples": ["exit code 1", "killed by SIGKILL"]},
            "fault": {"type": "string", "minLength": 1,
                      "description": "A problem that does not end the instance (e.g. a pid file naming a "
                      "process Patrol may not adopt or signal)."},
            "cpu-percent": {"type": "number", "minimum": 0,
                            "description": "CPU use in percent of one core (not in answers to pings)."},
            "rss-bytes": {"type": "integer", "minimum": 0,
                          "description": "Resident memory (not in answers to pings)."},
        })
    return properties


def _status_entry(group: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"One {group} in `/status/`. Key/values of items with a secret are left out.",
        "properties": _item_properties(group),
        "required": ["cas", "state"],
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
        "state-file": {**_ref("StateFile"),
                       "description": "Only when this request changed something that the state file refused: "
                       "the change is applied, but held in memory only until the file takes writes again."},
    })
    where = "a UDP datagram: compact JSON without `history` and `keyvalue`" if udp else "HTTP"
    return {
        "type": "object",
        "description": f"The {group}'s state *before* the request was applied, over {where}.",
        "properties": properties,
        "required": ["id", "group", "cas", "state", "cas-invalid"],
        "additionalProperties": False,
    }


def _record(group: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "instance-id": {"type": "string", "minLength": 1},
        "started": _ref("Timestamp"),
        "lastseen": _ref("Timestamp"),
        "stopped": _ref("Timestamp"),
        "disabled": {"type": "boolean"},
        "restart": {"type": "boolean"},
        "run-once": {"type": "boolean"},
        "shutdown": {"type": "boolean"},
        "keyvalue": _ref("KeyValue"),
        "reason": {"type": "string", "minLength": 1, "examples": ["exited", "ping expired", "disabled"]},
    }
    if group == "app":
        properties.update({
            "pid": _ref("Pid"),
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
    return {"oneOf": [_ref(app), _ref(service)],
            "discriminator": {"propertyName": "group", "mapping": {"app": _ref(app)["$ref"],
                                                                   "service": _ref(service)["$ref"]}}}


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
        "AppRecord": _record("app"),
        "ServiceRecord": _record("service"),
        "AppStatus": _status_entry("app"),
        "ServiceStatus": _status_entry("service"),
        "AppAnswer": _answer("app"),
        "ServiceAnswer": _answer("service"),
        "Answer": _by_group("AppAnswer", "ServiceAnswer"),
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
                "since": _ref("Timestamp"),
            },
            "required": ["ok"],
            "additionalProperties": False,
        },
        "Status": {
            "type": "object",
            "properties": {
                "instance-id": {"type": "string", "minLength": 1, "description": "This Patrol run."},
                "apps": {"type": "object", "additionalProperties": _ref("AppStatus")},
                "service": {"type": "object", "additionalProperties": _ref("ServiceStatus"),
                            "description": "Services (the original's singular key)."},
                "started": _ref("Timestamp"),
                "shutdown": {"type": "boolean"},
                "state-file": {**_ref("StateFile"),
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


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RESPONSES = {
    "Refused": _json(_ref("Errors"), "The request was refused (bad field, unknown id, wrong secret, ...)."),
    "CrossSite": _json(_ref("Errors"), "A browser request from another site (`Sec-Fetch-Site` or `Origin`)."),
    "MethodNotAllowed": _json(_ref("Errors"), "`Invalid Method`."),
    "TooLarge": _json(_ref("Errors"), f"The body is larger than {MAX_BODY} bytes."),
    "Unauthorized": {
        **_json(_ref("Errors"), "With `http.auth` in the config: no token, or a wrong one. (A browser asking "
                "for a page is redirected to `/login` instead.)"),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    "TooManyRequests": {
        **_json(_ref("Errors"), "Too many wrong tokens or wrong secrets of one item from this client address, "
                "or (beyond loopback) more requests per second than `http.rate-limit`."),
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "Seconds."}},
    },
}
#: Answers any operation may give: the gate in front of every route (patrol/auth.py).
GATE = {"401": "Unauthorized", "429": "TooManyRequests"}
SECURITY_SCHEMES = {
    "token": {"type": "http", "scheme": "bearer", "description": "The token of `http.auth` in the config."},
    "basic": {"type": "http", "scheme": "basic", "description": "Any user name, the token as the password."},
    "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                "description": "Set by the web GUI's login form."},
}


def _responses(**codes: str | dict[str, Any]) -> dict[str, Any]:
    """``_responses(_200=..., _400="Refused")``: a name refers to ``components.responses``."""
    return {k.lstrip("_"): {"$ref": f"#/components/responses/{v}"} if isinstance(v, str) else v
            for k, v in codes.items()}


def _not_allowed(path: str, *methods: str, cross_site: bool = True) -> dict[str, Any]:
    """Methods a path refuses: documented, so clients see the 405 (and tests check it)."""
    codes = {"_403": "CrossSite"} if cross_site else {}
    return {m: {"summary": f"Not allowed on {path}", "operationId": m + "".join(filter(str.isalnum, path.title())),
                "responses": _responses(**codes, _405="MethodNotAllowed")} for m in methods}


def _query_parameter(name: str) -> dict[str, Any]:
    if name == "history":
        return {"name": name, "in": "query", "allowEmptyValue": True, "schema": {"type": "string"},
                "description": "A flag: present (with any value) or absent. Ignored, as in a body."}
    schema = _field_schema(name)
    described = REQUEST_FIELDS[name] + (" Must be digits; an empty value is absent." if name in LIMITS else "")
    return {"name": name, "in": "query", "schema": schema, "description": described}


def _redirect(target: str) -> dict[str, Any]:
    return {"description": f"To `{target}` with the query kept.",
            "headers": {"Location": {"schema": {"type": "string"}}}}


def paths() -> dict[str, Any]:
    """Every operation, each with the gate's answers (401, 429) beside its own."""
    table = _operations()
    for operations in table.values():
        for operation in operations.values():
            operation["responses"].update(_responses(**{f"_{code}": name for code, name in GATE.items()}))
    return table


def _operations() -> dict[str, Any]:
    answer = _json(_ref("Answer"), "The item's state before the request, and `cas-invalid`.")
    return {
        "/status/": {
            "get": {
                "summary": "Every app and service",
                "description": "Answered for any method and any path below `/status/`. Items with a secret "
                "are shown without their key/values.",
                "operationId": "status",
                "responses": {"200": _json(_ref("Status"), "Patrol's state.")},
            },
        },
        "/api/": {
            "get": {
                "summary": "A request from the query",
                "description": "No pings, pids or key/values (those need POST). Each parameter at most once; "
                "unknown parameters are refused. Prefer POST for secrets: URLs end up in logs.",
                "operationId": "apiGet",
                "parameters": [_query_parameter(name) for name in QUERY_FIELDS],
                "responses": _responses(_200=answer, _400="Refused", _403="CrossSite"),
            },
            "post": {
                "summary": "A request as a JSON body",
                "description": f"At most {MAX_BODY} bytes of strict JSON (no NaN or Infinity). The content type "
                "is not checked. An empty body or `null` is an empty request (`Unknown Group`). With `http.auth`, "
                "a ping of an app that has a secret, carrying that secret, needs no token.",
                "operationId": "apiPost",
                "requestBody": {"required": False, "content": {"application/json": {
                    "schema": {"anyOf": [_ref("Request"), {"type": "null"}]}}}},
                "responses": _responses(_200=answer, _400="Refused", _403="CrossSite", _413="TooLarge"),
            },
            **_not_allowed("/api/", "put", "patch", "delete"),
        },
        "/-/reload": {
            "post": {
                "summary": "Re-read the config file and apply the difference (as SIGHUP)",
                "description": "An invalid config changes nothing; its errors are the answer.",
                "operationId": "reload",
                "responses": _responses(_200=_json(_ref("ReloadReport"), "The config was applied."),
                                        _400=_json(_ref("Errors"), "The config has errors; nothing changed."),
                                        _403="CrossSite"),
            },
            **_not_allowed("/-/reload", "get", "put", "patch", "delete"),
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
            },
            **_not_allowed("/openapi.json", "post", "put", "patch", "delete", cross_site=False),
        },
        "/api": {
            "get": {"summary": "Redirect", "operationId": "apiRedirectGet",
                    "responses": {"301": _redirect("/api/")}},
            "post": {"summary": "Redirect (a POST survives it)", "operationId": "apiRedirectPost",
                     "responses": {"308": _redirect("/api/")}},
        },
        "/status": {
            "get": {"summary": "Redirect", "operationId": "statusRedirectGet",
                    "responses": {"301": _redirect("/status/")}},
            "post": {"summary": "Redirect (a POST survives it)", "operationId": "statusRedirectPost",
                     "responses": {"308": _redirect("/status/")}},
        },
    }


UDP = {
    "description": f"One request per datagram of at most {MAX_DATAGRAM} bytes (larger ones are dropped), "
    "to the address in the config's `udp.listen` (default 127.0.0.1:1248; apps find it in `PATROL_UDP`). "
    "The answer is compact JSON sent to the sender's address. Invalid JSON, `null` and refused requests "
    "get no answer at all (as the original). Unencrypted and forgeable: not for secrets. The config's "
    "`udp.answer` limits what is answered (source addresses can be forged): `full` (default, as described "
    "here), `pings-only` (pings only), `minimal` (pings only, answered with `{}` or "
    "`{\"cas-invalid\":true}`, never larger than the request).",
    "max-datagram": MAX_DATAGRAM,
    "request": _ref("Request"),
    "answer": _ref("UdpAnswer"),
}

DESCRIPTION = """\
Patrol's JSON API: the original Patrol's wire format (field names, toggle numbers, the status shape
with its singular `service` key), with every field type- and range-checked.

Answers are JSON, TAB-indented with a trailing newline, `<`, `>` and `&` escaped as `\\u003c` etc.
Empty values are left out of answers (false, 0, "", {}, []). Every error is `{"errors": [...]}` with
a 4xx status. With `http.auth` in the config, every request needs the token (`Authorization: Bearer`);
see SECURITY.md. The UDP transport (no OpenAPI equivalent) is described in `x-udp`.
See docs/api.md for the rules (order of checks, toggles, CAS, secrets, pings)."""


@cache
def document() -> dict[str, Any]:
    """The whole document, built once (do not modify the returned dict)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Patrol API", "version": __version__, "description": DESCRIPTION,
                 "license": {"name": "MIT", "identifier": "MIT"}},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        # authentication is optional: only with http.auth in the config ({} = none needed)
        "security": [{}, {"token": []}, {"basic": []}, {"session": []}],
        "paths": paths(),
        "components": {"schemas": schemas(), "responses": RESPONSES, "securitySchemes": SECURITY_SCHEMES},
        "x-udp": UDP,
    }


def schema(name: str) -> dict[str, Any]:
    """A self-contained JSON Schema (2020-12) for one of ``components.schemas``.

    For clients and tests that validate answers: the ``$ref`` resolves inside the
    returned object, which carries every component it may refer to.
    """
    doc = document()
    if name not in doc["components"]["schemas"]:
        raise KeyError(f"no schema {name!r} in the OpenAPI document")
    return {"$schema": doc["jsonSchemaDialect"], "$ref": f"#/components/schemas/{name}",
            "components": doc["components"]}


def response_schema(path: str, method: str, status: int) -> dict[str, Any] | None:
    """The JSON Schema of the answer to ``method path`` with ``status``, self-contained.

    None when the document says that status is not an answer of that operation (a
    redirect has no JSON body: its schema is ``{}``, anything goes).
    """
    doc = document()
    response = doc["paths"].get(path, {}).get(method.lower(), {}).get("responses", {}).get(str(status))
    if response is None:
        return None
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    body = response.get("content", {}).get("application/json", {}).get("schema", {})
    return {"$schema": doc["jsonSchemaDialect"], **body, "components": doc["components"]}


def narrowed(schema: dict[str, Any], body: Any) -> dict[str, Any]:
    """``schema`` narrowed by its discriminator to the branch ``body`` names, if any.

    Validating against the branch gives errors about the body itself; against a
    ``oneOf`` a validator can only say that no branch matched.
    """
    components = schema.get("components", document()["components"])
    target = components["schemas"].get(schema.get("$ref", "").rsplit("/", 1)[-1], {})
    discriminator = target.get("discriminator")
    if discriminator is None or not isinstance(body, dict):
        return schema
    ref = discriminator["mapping"].get(body.get(discriminator["propertyName"]))
    return schema if ref is None else {**schema, "$ref": ref}
