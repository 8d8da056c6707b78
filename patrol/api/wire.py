"""The API's wire format, in one place: what a request may hold, and how answers look.

Every transport and the OpenAPI document read these tables, so a field, a limit or a
status code cannot mean one thing in one place and another elsewhere. Wire compatibility
with the original Patrol: its field names, its toggle numbers, its TAB-indented JSON
with ``<>&`` escaped, and its omit-if-empty rule for answers. Fixes: every field is
type- and range-checked (errors name the field, values are not echoed), unknown fields
are refused, and text that is not valid Unicode is refused at the door.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from typing import Any

from patrol.api import tabjson
from patrol.config.instances import MAX_INSTANCES
from patrol.util import strictjson

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
    "instances": int,
}
LIMITS = {"pid": UINT32, "toggle": 255, "cas": UINT64, "instances": MAX_INSTANCES}
#: the fields :func:`validate_request` may pass on their exact type alone (ASCII text,
#: an integer within its limit): the same verdict as the whole check, sooner
_SIMPLE: dict[str, Any] = {key: kind for key, kind in FIELDS.items() if kind in (str, bool, int)}
GROUPS = {"app": "app", "apps": "app", "service": "service", "services": "service"}
#: Upper bound of an item's key/values as compact JSON. Requests are size-limited, but
#: repeated merges are not: without a bound any client could grow Patrol's memory.
MAX_KEYVALUE_BYTES = 64 * 1024
#: Deepest nesting of arrays and objects in ``keyvalue``. JSON nested hundreds of levels
#: deep parses, but every recursive walk over it later (the state file's writer, the
#: pretty-printer of answers) can hit Python's recursion limit, and then fails forever.
MAX_KEYVALUE_DEPTH = 32
#: The largest request body the HTTP transport reads (413 beyond it).
MAX_BODY = 64 * 1024
#: What ``GET /api/?...`` may carry (pings, pids and key/values need a POST body).
QUERY_FIELDS = ("id", "group", "toggle", "history", "secret", "cas")
#: The GUI's login cookie (the OpenAPI document describes it as a security scheme).
SESSION_COOKIE = "patrol_session"

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
    """Type and range errors of a request, each naming the field (values are not echoed)."""
    if request is None:
        return []
    if not isinstance(request, dict):
        return [f"request: must be a JSON object (got {_json_type(request)})"]
    problems = []
    for key, value in request.items():
        simple = _SIMPLE.get(key)  # what most requests hold (a ping: four of these), checked at once
        if simple is not None and type(value) is simple and (
                simple is bool or (value.isascii() if simple is str else 0 <= value <= LIMITS[key])):
            continue
        if not _is_text(key):  # not echoed: it could not be written out as text
            problems.append(f"request: a field name {NOT_TEXT}")
            continue
        expected = FIELDS.get(key)
        if expected is None:
            problems.append(f"{_shorten(key)}: unknown field{_did_you_mean(key)} (known: {', '.join(FIELDS)})")
            continue
        if value is None:
            continue  # JSON null = absent, as Go's decoder treats it
        if expected is int:
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{key}: must be an integer (got {_json_type(value)})")
            elif not 0 <= value <= LIMITS[key]:
                problems.append(f"{key}: must be between 0 and {LIMITS[key]} (got {_shorten(str(value))})")
        elif not isinstance(value, expected):
            problems.append(f"{key}: must be {_json_names[expected]} (got {_json_type(value)})")
        elif isinstance(value, str) and not _is_text(value):
            problems.append(f"{key}: {NOT_TEXT}")
        elif expected is dict:
            depth, text = _walk(value)
            if depth > MAX_KEYVALUE_DEPTH:
                problems.append(f"{key}: arrays and objects nested more than {MAX_KEYVALUE_DEPTH} levels deep")
            elif not text:
                problems.append(f"{key}: a key or value {NOT_TEXT}")
    return problems


#: JSON can escape a lone UTF-16 surrogate ("\ud800"), which decodes to a str that no
#: UTF-8 encoder, state file or page template accepts: refused at the door, in every field
NOT_TEXT = "is not valid Unicode text (it holds a lone UTF-16 surrogate)"


def _is_text(value: str) -> bool:
    """Is ``value`` made of Unicode scalar values only (no lone surrogates)?"""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(value: Any) -> tuple[int, bool]:
    """(how deep arrays and objects are nested in ``value``, whether every key and
    string in it is valid text), level by level, not recursive."""
    depth, level, text = 0, [value], True
    while containers := [v for v in level if isinstance(v, (dict, list))]:
        depth += 1
        level = []
        for container in containers:
            if isinstance(container, dict):
                text = text and all(_is_text(k) for k in container)
                level.extend(container.values())
            else:
                level.extend(container)
        text = text and all(_is_text(v) for v in level if isinstance(v, str))
        if depth > MAX_KEYVALUE_DEPTH:
            break
    return depth, text


_json_names = {str: "a string", bool: "true or false", dict: "an object"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _did_you_mean(key: str) -> str:
    import difflib  # here: only a request with a misspelt field needs it

    close = difflib.get_close_matches(key.lower(), FIELDS, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


#: compact JSON (UDP answers): one encoder for every call, not one per call as
#: ``json.dumps`` with ``separators`` makes ...
_COMPACT = json.JSONEncoder(separators=(",", ":"))
#: ... and its C part made once too (``encode`` makes one per call, a fifth of encoding
#: a ping's answer): the same arguments, but no check for cycles, which no answer has
#: (they are built of new dicts and decoded JSON), and which would keep the ids of a
#: failed encoding's objects between calls
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_compact = (_c_make_encoder(None, _COMPACT.default, json.encoder.encode_basestring_ascii, None, ":", ",", False,
                            False, True) if _c_make_encoder is not None else None)


def dumps(body: Any, *, pretty: bool = True) -> bytes:
    """JSON as the original wrote it: TAB-indented plus newline, <>& escaped."""
    if pretty:
        text = tabjson.dumps(body) + "\n"
    elif _compact is not None and type(body) is dict:
        text = "".join(_compact(body, 0))
    else:
        text = _COMPACT.encode(body)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


class Problem:
    """Why a body could not be decoded (distinct from any JSON value it could decode to)."""

    def __init__(self, message: str) -> None:
        self.message = message


def decode_json(body: bytes) -> Any:
    """The JSON value of a body (an empty body is ``null``), or a :class:`Problem`."""
    if not body.strip():
        return None
    try:
        return strictjson.loads(body)
    except UnicodeDecodeError:
        return Problem("Invalid Request: the body is not UTF-8 text")
    except ValueError as exc:
        return Problem(f"Invalid Request: not JSON ({exc})")
    except RecursionError:
        return Problem("Invalid Request: JSON nested too deeply")


def request_from_query(items: list[tuple[str, str]]) -> dict[str, Any] | list[str]:
    """Build an API request from ``GET /api/?id=&group=&toggle=&history=&secret=&cas=``.

    Fixes of the original: a toggle or cas that is not a number is an error (it was 0),
    a toggle over 255 is an error (it was truncated to 8 bits: 257 became 1), and so is
    a parameter given twice or one GET cannot carry (pings and key/values need POST).
    """
    request: dict[str, Any] = {}
    problems = []
    seen: set[str] = set()
    for key, value in items:
        if key in seen:
            problems.append(f"{key}: given more than once")
            continue
        seen.add(key)
        if key not in QUERY_FIELDS:
            hint = " (pings, pids and key/values need a POST with a JSON body)" if key in (
                "ping", "pid", "keyvalue", "keyvalue-replace") else ""
            problems.append(f"{key[:40]}: unknown query parameter{hint} (known: {', '.join(QUERY_FIELDS)})")
        elif key == "history":
            request["history"] = True
        elif key in ("toggle", "cas"):
            if value == "":
                continue
            if not value.isascii() or not value.isdigit():
                problems.append(f"{key}: must be a non-negative integer (got {value[:40]!r})")
            else:  # past 20 digits it is out of range anyway; int() of a huge string is slow
                request[key] = int(value) if len(value) <= 20 else 2**64
        else:
            request[key] = value
    return problems or request


def pretty(value: Any, level: int = 0) -> str:
    """``value`` as the original's TAB-indented JSON (``<>&`` escaped), to be placed
    ``level`` levels deep in a bigger document (lines after the first are indented)."""
    text = tabjson.dumps(value, level)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def omit_empty(body: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """The original's omit-if-empty: false, 0, "", {} and [] are left out."""
    return {k: v for k, v in body.items() if v or k in keep or not empty(v)}  # a true value is never empty


def empty(value: Any) -> bool:
    return value is None or value is False or value == 0 or value == "" or value == {} or value == []


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
