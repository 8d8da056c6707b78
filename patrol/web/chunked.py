"""An answer built in chunks (``/status/``, ``/metrics``): sent chunk by chunk when it
is big, as one plain body when it is one chunk.

:mod:`patrol.util.steps` builds a big answer in chunks of about 256 KiB so that sending
megabytes never stalls the loop; Starlette's ``StreamingResponse`` sends them one per
turn. But Starlette runs every streaming response inside an anyio task group that also
listens for the client's disconnect: a task group and a second task per answer, and on
the first one the import of anyio's asyncio backend and streams, which then stay in
the daemon for good (measured: one app, 36.8 -> 38.1 MiB of RSS at the first
``GET /status/``). An answer that fits in one chunk (``/status/`` up to ~800 apps) has
nothing to pace, and goes as a plain ``Response``: the same status, headers and bytes.
"""

from __future__ import annotations

from starlette.responses import Response, StreamingResponse

from patrol.util import steps


def chunked_response(chunks: list[bytes], media_type: str) -> Response:
    """``chunks`` (as :meth:`patrol.util.steps.Chunks.done` returns them) as a 200 answer."""
    if len(chunks) <= 1:
        return Response(chunks[0] if chunks else b"", 200, media_type=media_type)
    return StreamingResponse(steps.each(chunks), 200, media_type=media_type,
                             headers={"Content-Length": str(sum(map(len, chunks)))})
