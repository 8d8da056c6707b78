"""uvicorn's httptools protocol as :class:`patrol.web.protocols.HttpToolsConnection` runs
it: a method llhttp does not know told apart from its other errors, and one keep-alive
timer per connection.

Imported only when httptools is installed (uvicorn's protocol module needs it).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from patrol.web.deadline import Deadline


class MethodUnknown(Exception):
    """llhttp refused the method of a request that began a read: h11 takes it."""


class Llhttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, telling a method llhttp does not know from the
    parser's other errors (uvicorn answers those with 400, as here).

    uvicorn arms a new keep-alive timer after every answer (closing a connection that
    then sends nothing for ``timeout_keep_alive`` seconds) and cancels it on every read:
    two timer handles per request through the loop's heap. Here one :class:`Deadline`
    per connection does the same, moved on instead of made anew.
    """

    _fresh: bytes | None
    _begun: int

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config=config, server_state=server_state, app_state=app_state, _loop=_loop)
        self._keep_alive = Deadline(self.loop, self.timeout_keep_alive_handler)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError:
            if self._fresh is data and self._begun == 1:  # the read's first request: its
                raise MethodUnknown from None            # bytes are all in ``data``
            self._parser_error()
        except httptools.HttpParserError:
            self._parser_error()
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _parser_error(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    # -- the keep-alive timer ------------------------------------------------------------

    def _unset_keepalive_if_required(self) -> None:
        self._keep_alive.disarm()

    def on_response_complete(self) -> None:
        """uvicorn's (as of 0.54), with its keep-alive timer moved on, not made anew."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()  # (paused while a request waited, or for a large body)
        if self.pipeline:  # the next request that waited: its turn
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._keep_alive.arm(self.timeout_keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._keep_alive.cancel()
