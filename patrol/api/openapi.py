"""The OpenAPI 3.1 document of Patrol's JSON API, served at ``/openapi.json``.

Clients generate code from it and tests validate real answers against it, so it is
built from the same tables the API enforces (:mod:`patrol.api.wire`: ``FIELDS``,
``LIMITS``, ``QUERY_FIELDS``, ``MAX_BODY``) and the one enum of item states: a field
added to the API without a description here fails at build time instead of going
undocumented. The schemas are in :mod:`patrol.api.openapi_schemas`, the paths here. Answers are described strictly
(``additionalProperties: false``) so a key that appears in an answer but not here is
caught by the test that keeps this document true (``tests/api/test_openapi.py``).

OpenAPI has no notion of UDP; the UDP transport is described in the ``x-udp``
extension at the top level, with schemas in ``components`` like everything else.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from patrol import __version__
from patrol.api import openapi_logs
from patrol.api.openapi_schemas import MAX_DATAGRAM, REQUEST_FIELDS, field_schema, ref, schemas
from patrol.api.wire import LIMITS, MAX_BODY, QUERY_FIELDS, SESSION_COOKIE

def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RESPONSES = {
    "Refused": _json(ref("Errors"), "The request was refused (bad field, unknown id, wrong secret, ...)."),
    "CrossSite": _json(ref("Errors"), "A browser request from another site (`Sec-Fetch-Site` or `Origin`)."),
    "MethodNotAllowed": _json(ref("Errors"), "`Invalid Method`."),
    "TooLarge": _json(ref("Errors"), f"The body is larger than {MAX_BODY} bytes."),
    "Unauthorized": {
        **_json(ref("Errors"), "With `http.auth` in the config: no token, or a wrong one. (A browser asking "
                "for a page is redirected to `/login` instead.)"),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    "TooManyRequests": {
        **_json(ref("Errors"), "Too many wrong tokens or wrong secrets of one item from this client address, "
                "or (beyond loopback) more requests per second than `http.rate-limit`."),
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}, "description": "Seconds."}},
    },
}
#: Answers any operation may give: the gate in front of every route (patrol/web/auth.py).
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
    schema = field_schema(name)
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
    answer = _json(ref("Answer"), "The item's state before the request, and `cas-invalid`.")
    return {
        "/status/": {
            "get": {
                "summary": "Every app and service",
                "description": "Answered for any method and any path below `/status/`. Items with a secret "
                "are shown without their key/values.",
                "operationId": "status",
                "responses": {"200": _json(ref("Status"), "Patrol's state.")},
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
                    "schema": {"anyOf": [ref("Request"), {"type": "null"}]}}}},
                "responses": _responses(_200=answer, _400="Refused", _403="CrossSite", _413="TooLarge"),
            },
            **_not_allowed("/api/", "put", "patch", "delete"),
        },
        "/api/logs": openapi_logs.path(_json, _responses, _not_allowed),
        "/-/reload": {
            "post": {
                "summary": "Re-read the config file and apply the difference (as SIGHUP)",
                "description": "An invalid config changes nothing; its errors are the answer.",
                "operationId": "reload",
                "responses": _responses(_200=_json(ref("ReloadReport"), "The config was applied."),
                                        _400=_json(ref("Errors"), "The config has errors; nothing changed."),
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
        **_observability_operations(),
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


#: the query of ``GET /events`` (patrol/api/stream.py parses it)
EVENT_PARAMETERS = {
    "group": "Only events of this group: patrol, app or service. Repeatable.",
    "id": "Only events of this app or service (or set of instances). Repeatable.",
    "event": "Only events of this name, e.g. `app.closed`. Repeatable.",
    "periodic": "1: also the events of every tick and ping (never numbered or kept).",
    "backlog": "Start with the last N kept events (0..1024).",
    "follow": "0: send the kept events asked for (backlog or Last-Event-ID), then end.",
    "heartbeat": "Seconds of silence before a heartbeat comment (1..300, default 15).",
}


def _observability_operations() -> dict[str, Any]:
    """``/metrics`` and ``/events``: not JSON, described for completeness (docs/observability.md)."""
    text = {"type": "string"}
    return {
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "description": "The Prometheus text exposition format; also served on `metrics.listen`.",
                "operationId": "metrics",
                "responses": {"200": {"description": "The metrics.", "content": {
                    "text/plain; version=0.0.4; charset=utf-8": {"schema": text}}}},
            },
            **_not_allowed("/metrics", "post", "put", "patch", "delete", cross_site=False),
        },
        "/events": {
            "get": {
                "summary": "The lifecycle events, as Server-Sent Events",
                "description": "Ids `<run>:<n>`; `Last-Event-ID` resumes after that event from the last 1,024 "
                "kept; a client that falls 256 events behind is disconnected.",
                "operationId": "events",
                "parameters": [{"name": name, "in": "query", "schema": text, "description": described}
                               for name, described in EVENT_PARAMETERS.items()]
                + [{"name": "Last-Event-ID", "in": "header", "schema": text,
                    "description": "Resume after this event."}],
                "responses": _responses(
                    _200={"description": "The stream (until Patrol stops or the client leaves).",
                          "content": {"text/event-stream": {"schema": text}}},
                    _400="Refused",
                    _503=_json(ref("Errors"), "Too many clients follow the events already; retry later.")),
            },
            **_not_allowed("/events", "post", "put", "patch", "delete", cross_site=False),
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
    "request": ref("Request"),
    "answer": ref("UdpAnswer"),
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
        "components": {"schemas": {**schemas(), **openapi_logs.schemas()}, "responses": RESPONSES, "securitySchemes": SECURITY_SCHEMES},
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
