"""``GET /gui/events``: the live pages' stream of changed rows.

The dashboard and the detail pages open it (an ``EventSource``) instead of polling
``/gui/state.json`` every second: whenever an event changes an item (it starts, exits,
is toggled, backs off, ...), its row is pushed, formatted exactly as ``state.json``
formats it (:meth:`patrol.web.gui.viewmodels.Item.live`), read when it is sent, so a
burst of events never shows an older state than the last. Patrol's own events push
the page's footer and banner (:meth:`patrol.web.gui.core.Gui.patrol_info`).

It is the event stream of ``GET /events`` (:mod:`patrol.api.stream`, the same queue
limits and drops), rendered for the page; the query filters the same way (a detail
page asks for its item only). The script keeps polling as the fallback while the
stream is down, shows "Disconnected" when that fails too, and re-reads the whole state
when the stream (re)opens and every 15 seconds while it is up (``STATS_MS`` in
patrol.js), for what changes without events (uptime, CPU, memory), and a second after
an item showed a passing state (starting, stopping, restarting) whose end no event
may announce.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from patrol.api.stream import Frame, parse_query
from patrol.web.events import open_stream, problem, still_allowed, stream_response
from patrol.web.gui import viewmodels as views
from patrol.web.gui.core import JSON
from patrol.web.gui.security import secure

if TYPE_CHECKING:
    from patrol.api.view import KernelView
    from patrol.web.gui.core import Gui

class Live:
    """The GUI's side of the event stream."""

    def __init__(self, gui: "Gui", view: "KernelView") -> None:
        self.gui = gui
        self.view = view

    def routes(self) -> list[BaseRoute]:
        return [Route("/gui/events", self.events, methods=["GET"])]

    async def events(self, request: Request) -> Response:
        parsed = parse_query(request.query_params.multi_items())
        if isinstance(parsed, list):
            return secure(problem(400, *parsed))
        subscription = open_stream(self.view, request, parsed, None)  # a reconnecting page re-reads it all
        if isinstance(subscription, Response):
            return secure(subscription)
        return secure(stream_response(subscription, parsed.heartbeat, self.render, still_allowed(request)))

    def render(self, frame: Frame) -> bytes | None:
        """The frame as the page wants it: the item's row now, or Patrol's footer."""
        if frame.group in ("app", "service"):
            key = f"{frame.group}/{frame.item}"
            runner = self.gui.find(frame.group, frame.item)
            if runner is None:  # removed by a reload: the page reloads too
                return b"event: item\ndata: " + JSON.encode({"key": key, "gone": True}) + b"\n\n"
            row = views.item(runner, self.gui.patrol.wall(), self.gui.stats).live()
            return b"event: item\ndata: " + JSON.encode({"key": key, "item": row}) + b"\n\n"
        return b"event: patrol\ndata: " + JSON.encode(self.gui.patrol_info()) + b"\n\n"
