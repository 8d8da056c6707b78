"""The OpenAPI description of ``/api/logs`` (:mod:`patrol.api.loglines`): its request
fields, built from the endpoint's own table so a new field cannot go undocumented, and
its answer, strictly."""

from __future__ import annotations

from typing import Any, Callable

from patrol.api.loglines import DEFAULT_LINES, FIELDS, STREAMS
from patrol.engine.logread import MAX_LINES

#: One line per request field; every key of loglines.FIELDS must be here.
LOG_FIELDS = {
    "id": "The app's id (only apps have logs).",
    "group": "`app` or `apps`; may be left out.",
    "stream": "`stdout`, `stderr` or `both` (the default: the two merged in the order Patrol saw their "
              "lines arrive; an app with `std-merge` has one file).",
    "lines": f"How many of the last lines (default {DEFAULT_LINES}, at most {MAX_LINES}); with a cursor, "
             "ignored.",
    "cursor": "From an earlier answer (one stream): what was written since, exactly once, in order, across "
              "rotation and restarts.",
    "since": "Unix seconds (one stream, no cursor): from the start of the instance running then.",
    "secret": "The app's secret, if it has one (POST only: never in a URL).",
}
_KINDS = {str: "string", int: "integer", float: "number"}
_BOTH = {"stdout": {"type": "string"}, "stderr": {"type": "string"}}


def request_schema() -> dict[str, Any]:
    if set(LOG_FIELDS) != set(FIELDS):
        raise RuntimeError(f"openapi: LOG_FIELDS and loglines.FIELDS differ: {sorted(set(LOG_FIELDS) ^ set(FIELDS))}")
    properties: dict[str, Any] = {name: {"type": _KINDS[FIELDS[name]], "description": text}
                                  for name, text in LOG_FIELDS.items()}
    properties["stream"]["enum"] = list(STREAMS)
    properties["lines"].update(minimum=0, maximum=MAX_LINES)
    properties["since"].update(minimum=0)
    return {"type": "object", "properties": properties, "required": ["id"], "additionalProperties": False}


def schemas() -> dict[str, Any]:
    return {
        "LogRequest": request_schema(),
        "LogLines": {
            "type": "object",
            "description": "Lines without their newlines. One stream: `cursor` and `file`; `both`: `streams` "
                           "(each line's stream), `cursors` and `files` (one per stream, to follow each).",
            "properties": {
                "id": {"type": "string"},
                "stream": {"enum": ["stdout", "stderr", "stdmerge", "both"]},
                "lines": {"type": "array", "items": {"type": "string"}},
                "streams": {"type": "array", "items": {"enum": ["stdout", "stderr"]}},
                "cursor": {"type": "string", "description": "Send it back for what follows."},
                "cursors": {"type": "object", "properties": _BOTH, "additionalProperties": False},
                "file": {"type": "string", "description": "The file read last, relative to the log directory."},
                "files": {"type": "object", "properties": _BOTH, "additionalProperties": False},
                "more": {"type": "boolean", "description": "More was there than one answer carries: ask again."},
                "lost": {"type": "boolean",
                         "description": "Lines were pruned or rotated away before they could be read."},
            },
            "required": ["id", "stream", "lines", "more", "lost"],
            "additionalProperties": False,
        },
    }


def path(json_body: Callable[[dict[str, Any], str], dict[str, Any]], responses: Callable[..., dict[str, Any]],
         not_allowed: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """``/api/logs`` (helpers passed in by :mod:`patrol.api.openapi`, which owns them)."""
    ref = {"$ref": "#/components/schemas/LogLines"}
    answers = dict(
        _200=json_body(ref, "The lines, and where to go on from."),
        _400="Refused",
        _403=json_body({"$ref": "#/components/schemas/Errors"},
                       "A browser request from another site, or an app with a secret asked without it."),
        _404=json_body({"$ref": "#/components/schemas/Errors"}, "No app with that id, or its log is unreadable."),
        _503=json_body({"$ref": "#/components/schemas/Errors"}, "The log directory did not answer in time."),
    )
    query = [{"name": name, "in": "query", "schema": {"type": _KINDS[FIELDS[name]]}, "description": text}
             for name, text in LOG_FIELDS.items() if name != "secret"]
    for parameter in query:
        if parameter["name"] in ("lines", "since"):
            parameter["schema"] = {"type": "string", "pattern": "^[0-9]{1,12}$"}
    return {
        "get": {"summary": "An app's log lines, from the query", "operationId": "logsGet",
                "description": "As POST, without a secret.", "parameters": query,
                "responses": responses(**answers)},
        "post": {"summary": "An app's log lines", "operationId": "logsPost",
                 "description": "The last lines, or with a cursor what followed. `patrol logs` reads this.",
                 "requestBody": {"required": True, "content": {"application/json": {
                     "schema": {"$ref": "#/components/schemas/LogRequest"}}}},
                 "responses": responses(**answers, _413="TooLarge")},
        **not_allowed("/api/logs", "put", "patch", "delete"),
    }
