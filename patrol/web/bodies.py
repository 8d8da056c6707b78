"""What every API route checks of a request before reading it: where a browser says it
came from, and how big its body is; and the one reading of a JSON request, from a GET
query or a POST body (``/api/``, ``/api/logs``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from starlette.requests import Request

from patrol.api.wire import MAX_BODY, Problem, decode_json


@dataclass(frozen=True)
class Refused:
    """A request refused before its route read it: the status and the error messages."""

    status: int
    messages: tuple[str, ...]


async def read_request(request: Request, from_query: Callable[[list[tuple[str, str]]], Any],
                       invalid_method: str = "Invalid Method") -> Any:
    """A GET's query (through ``from_query``, which returns a list of problems when it
    refuses) or a POST's JSON body (at most MAX_BODY bytes), or :class:`Refused`: a
    cross-site browser request (403), a body too big (413) or no JSON (400), another
    method (405, ``invalid_method``)."""
    refused = cross_site(request)
    if refused:
        return Refused(403, (refused,))
    body = await read_body(request) if request.method == "POST" else None
    return _decoded(request, body, from_query, invalid_method)


def request_in(request: Request, body: bytes, from_query: Callable[[list[tuple[str, str]]], Any],
               invalid_method: str = "Invalid Method") -> Any:
    """:func:`read_request` of a request whose body (at most MAX_BODY bytes) is in
    already (:mod:`patrol.web.shortcut`): the same checks in the same order."""
    refused = cross_site(request)
    if refused:
        return Refused(403, (refused,))
    return _decoded(request, body, from_query, invalid_method)


def _decoded(request: Request, body: bytes | None, from_query: Callable[[list[tuple[str, str]]], Any],
             invalid_method: str) -> Any:
    """The request of a GET's query or of a POST's ``body`` (None: larger than MAX_BODY)."""
    method = request.method
    if method == "GET":
        parsed = from_query(request.query_params.multi_items())
        return Refused(400, tuple(parsed)) if isinstance(parsed, list) else parsed
    if method == "POST":
        if body is None:
            return Refused(413, (f"Invalid Body: larger than {MAX_BODY} bytes",))
        decoded = decode_json(body)
        return Refused(400, (decoded.message,)) if isinstance(decoded, Problem) else decoded
    return Refused(405, (invalid_method,))


def cross_site(request: Request) -> str | None:
    """Why a browser request from another site is refused, or None when it is not one.

    Browsers mark requests with ``Sec-Fetch-Site`` (modern ones) or ``Origin``; other
    clients (curl, apps, the ``patrol`` client) send neither and are never refused.
    ``same-site`` counts as foreign too: another port on localhost is another program.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site in ("same-origin", "none"):
            return None
        return f"Cross-site request refused: the browser says the request came from another site ({site})"
    origin = request.headers.get("origin")
    if origin is None or urlsplit(origin).netloc == request.headers.get("host"):
        return None
    return "Cross-site request refused: Origin does not match Host"


async def read_body(request: Request) -> bytes | None:
    """The request body, or None when it exceeds MAX_BODY (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
