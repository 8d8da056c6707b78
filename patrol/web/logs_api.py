"""``/api/logs``: an app's log lines over HTTP, with a cursor (:mod:`patrol.api.loglines`).

Behind the same gate as every route (``http.auth``); an app with a secret needs it in
the POST body (never in a URL), and guesses are throttled as the API's. The file reads
run in a few threads of their own, each request waiting at most :data:`FILE_TIMEOUT`
seconds: a hung disk answers 503, never holds the loop.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from patrol.api import loglines
from patrol.api.access import item_credential, too_many
from patrol.api.visibility import sees_private
from patrol.api.wire import dumps
from patrol.util.compare import same_secret
from patrol.web import auth
from patrol.web.bodies import Refused, read_request

if TYPE_CHECKING:
    from patrol.engine.readside import Reader

FILE_TIMEOUT = 5.0
FILE_THREADS = 4


class LogLines:
    def __init__(self, reader: "Reader") -> None:
        self.reader = reader
        self._threads = ThreadPoolExecutor(max_workers=FILE_THREADS, thread_name_prefix="patrol-api-logs")

    async def endpoint(self, request: Request) -> Response:
        parsed = await read_request(request, loglines.from_query, "Invalid Method: GET or POST")
        if isinstance(parsed, Refused):
            return _errors(parsed.status, *parsed.messages)
        req = loglines.parse(parsed)
        if isinstance(req, list):
            return _errors(400, *req)
        app = self.reader.apps.get(req.id)
        if app is None:
            return _errors(404, f"id: there is no app with the id {req.id[:70]!r}")
        if app.config.secret:
            credential = item_credential("app", app.id)
            wait = auth.retry_after(request, credential)
            if wait:
                return Response(dumps({"errors": [too_many(wait)]}), 429, media_type="application/json")
            proven = bool(req.secret) and same_secret(req.secret, app.config.secret)
            if req.secret and not proven:
                auth.record_failure(request, credential)
            if not sees_private(app, proven=proven):
                return _errors(403, "secret: this app's logs need its secret (Secret Invalid)" if req.secret
                               else "secret: this app's logs need its secret")
        output = self.reader.log_output
        found = loglines.sources(app, req.stream, output.writing)
        loop = asyncio.get_running_loop()
        if len(found) == 2:
            future = loop.run_in_executor(self._threads, loglines.read_both, found[0], found[1],
                                          output.order(app.id, req.lines), req.lines)
        else:
            future = loop.run_in_executor(self._threads, loglines.read, found[0], req)
        try:
            answer = await asyncio.wait_for(future, FILE_TIMEOUT)
        except asyncio.TimeoutError:
            return _errors(503, f"the log directory did not answer within {FILE_TIMEOUT:g} s")
        except OSError as exc:
            return _errors(404, f"cannot read the log: {exc.strerror or exc}")
        answer = {"id": app.id, "stream": found[0].stream if len(found) == 1 else "both", **answer}
        return Response(dumps(answer), 200, media_type="application/json; charset=utf-8")


def _errors(status: int, *messages: str) -> Response:
    return Response(dumps({"errors": list(messages)}), status, media_type="application/json; charset=utf-8")
