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

Building and sending a big answer leaves free memory in the C allocator that an idle
Patrol never reuses: after one of at least :data:`BIG` bytes it is handed back soon
(:func:`patrol.engine.heap_trim.release_soon`, at most once a minute).
"""

from __future__ import annotations

import asyncio

from starlette.responses import Response, StreamingResponse

from patrol.engine import heap_trim
from patrol.util import steps

#: an answer this big is followed by a release of free memory (``/status/``: ~200 apps)
BIG = 64 * 1024


def chunked_response(chunks: list[bytes], media_type: str) -> Response:
    """``chunks`` (as :meth:`patrol.util.steps.Chunks.done` returns them) as a 200 answer."""
    size = sum(map(len, chunks))
    if size >= BIG:
        try:
            heap_trim.release_soon(asyncio.get_running_loop())
        except RuntimeError:  # no loop runs (a caller outside the server): nothing to schedule on
            pass
    if len(chunks) <= 1:
        return Response(chunks[0] if chunks else b"", 200, media_type=media_type)
    return StreamingResponse(steps.each(chunks), 200, media_type=media_type,
                             headers={"Content-Length": str(size)})
