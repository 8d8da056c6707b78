"""``GET /metrics``: Prometheus metrics (:mod:`patrol.api.metrics`), in the text format.

Served beside the API, behind ``http.auth`` like every route, and, when the config has
a ``metrics`` section, on a listener of its own that serves nothing else: a scraper
then needs no admin token (``metrics.auth`` may give it a token of its own). That
listener follows the HTTP listener's rules: loopback by default (127.0.0.1:9421), and
beyond loopback only with ``metrics.auth`` or ``"insecure-no-auth": true``.

``prometheus_client`` is imported at the first scrape, in a worker thread (it takes
~50 ms, which the loop must not wait through): a Patrol nobody scrapes never loads it.
A scrape is built in steps (:mod:`patrol.util.steps`) and at most two big answers are
built at once (:attr:`patrol.api.handler.Api.big_answers`).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from patrol.web.chunked import chunked_response

if TYPE_CHECKING:
    from patrol.api.metrics import Metrics
    from patrol.api.view import KernelView


class MetricsPage:
    """The ``/metrics`` endpoint of one Patrol (shared by both listeners)."""

    def __init__(self, view: "KernelView") -> None:
        self.view = view
        self._metrics: "Metrics | None" = None
        self._loading = asyncio.Lock()

    async def metrics(self) -> "Metrics":
        """The metrics, their module imported off the loop the first time."""
        if self._metrics is None:
            async with self._loading:
                if self._metrics is None:
                    module = await asyncio.to_thread(importlib.import_module, "patrol.api.metrics")
                    view = self.view
                    self._metrics = module.Metrics(view.supervisor, view.api.requests, view.stream,
                                                   self._store_failures)
        assert self._metrics is not None
        return self._metrics

    def _store_failures(self) -> int:
        writer = self.view.supervisor.writer
        return writer.failures if writer is not None else 0

    async def endpoint(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            body = b'{"errors": ["Invalid Method: GET the metrics"]}\n'
            return Response(body, 405, media_type="application/json; charset=utf-8")
        metrics = await self.metrics()
        async with self.view.api.big_answers:
            chunks = await metrics.scrape()
        from patrol.api.metrics import CONTENT_TYPE  # loaded by now

        return chunked_response(chunks, CONTENT_TYPE)
