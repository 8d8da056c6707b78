"""The answer to a ping without its history: one rendering per change, not per ping.

A ping's answer is its app's state before the ping (:meth:`Api.render` with ``ids``
and without history or process statistics). Between two pings of the same app only
``lastseen`` and ``cas`` changed, in the usual case: the ping before set them, and
nothing else. Rendering the whole item (its fields, their omit-if-empty rule, its
timestamps) was a fifth of Patrol's work per UDP ping; so the rendered fields are kept
with every input they were rendered from, and a ping whose app's inputs all compare
equal copies them, with its ``lastseen`` and ``cas`` written in place. What changes
without a change session (``uptime``, readiness, probes: :meth:`Api.live_fields`) is
rendered fresh every time, as before (the usual ``uptime`` and ``ready`` directly).

Anything this cannot reuse exactly is rendered whole: key/values (a merge changes them
in place, under the same object; the answer shows a copy), a history, an app that is
not kept alive by pings (its ``lastseen`` may be "now"), a ``lastseen`` or ``cas``
that the omit-if-empty rule would leave out. Tests compare both ways on every kind of
change (tests/api/test_ping_render.py).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Protocol

from patrol.util.gotime import format_time

if TYPE_CHECKING:
    from patrol.engine.readside import ItemView, Reader

#: the item state's fields the rendered fields depend on, but ``lastseen`` and ``cas``
#: (written in place) and ``keyvalue`` and ``history`` (never cached: see the docstring)
STATE_INPUTS = ("instance_id", "pid", "started", "disabled", "restart", "run_once")
#: the runner's properties they depend on (``config``: name, secret; ``starts``: ``restarts``; as
#: patrol.api.status_items)
RUNNER_INPUTS = ("group", "config", "phase", "starts", "backoff_delay", "last_exit", "last_reason", "fault_message",
                 "ping_transport")

_state_inputs = operator.attrgetter(*STATE_INPUTS)
_runner_inputs = operator.attrgetter(*RUNNER_INPUTS)


class Renderer(Protocol):
    """What of :class:`patrol.api.handler.Api` the cache renders with."""

    @property
    def patrol(self) -> "Reader": ...

    def render(self, runner: "ItemView", *, proven: bool, ids: bool = False, history: bool = True,
               stats: bool = False) -> dict[str, Any]: ...

    def render_fields(self, runner: "ItemView", *, proven: bool, ids: bool = False, history: bool = True,
                      now: str | None = None) -> dict[str, Any]: ...

    def live_fields(self, runner: "ItemView", *, stats: bool, details: dict[str, Any] | None = None) -> dict[str, Any]: ...


class PingRenders:
    """The rendered fields of the pinged apps of one :class:`Api` (see the module docstring)."""

    def __init__(self, api: Renderer) -> None:
        self.api = api
        #: runner -> (inputs, fields); a reload's new runners replace the old ones
        self._items: dict[Any, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def render(self, runner: "ItemView", *, proven: bool) -> dict[str, Any]:
        """``api.render(runner, ids=True, history=False, proven=proven, stats=False)``."""
        api = self.api
        st = runner.state
        if st.keyvalue or runner.ping_transport is None or st.lastseen is None or not st.cas:
            return api.render(runner, ids=True, history=False, proven=proven, stats=False)
        patrol = api.patrol
        config = patrol.config
        key = (config, proven, patrol.shutting_down, *_state_inputs(st), *_runner_inputs(runner))
        cached = self._items.get(runner)
        lastseen = format_time(st.lastseen, config.json_timestamp)
        if cached is not None and cached[0] == key and lastseen:  # (an odd layout may write "": left out)
            body = dict(cached[1])
            body["lastseen"] = lastseen
            body["cas"] = st.cas
        else:
            body = api.render_fields(runner, proven=proven, ids=True, history=False)
            if "lastseen" in body and "cas" in body:  # (always, for the rendering asked for above)
                if len(self._items) >= 2 * len(patrol.apps) + 16:
                    self._items.clear()  # runners a reload replaced: the pinged ones come back at once
                self._items[runner] = (key, dict(body))
        health = runner.health
        if health.probes() or health.status_text or getattr(runner.config, "instance_of", None):
            body.update(api.live_fields(runner, stats=False))
        else:  # the usual live fields, written without their dictionary (as patrol.api.status_items)
            if st.started is not None:
                body["uptime"] = round(max(0.0, patrol.wall() - st.started), 1)
            body["ready"] = runner.ready
        return body
