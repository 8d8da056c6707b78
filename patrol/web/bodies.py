"""What every API route checks of a request before reading it: where a browser says it
came from, and how big its body is."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

from patrol.api.wire import MAX_BODY


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
