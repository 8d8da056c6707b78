"""``/status/``'s items, each written once per change: cached TAB-indented fragments.

A ``/status/`` answer at 500 apps is 500 items rendered and encoded, and between two
polls almost none of them changed. So each item's text is kept together with every
input it was rendered from (read in one C call by :func:`operator.attrgetter`), and is
reused while those inputs compare equal. Any change makes a new key and a new text: a
session of the item's state (it bumps ``cas``; key/values only change that way), a new
history record (``history_total``), a new phase, restart count, backoff, exit, reason or
fault, a new configuration (a reload makes new config objects), or a new
``json-timestamp`` layout. What changes without a change session is written fresh on
every answer: ``uptime``, readiness and the probes' answers, ``cpu-percent`` and
``rss-bytes`` (:meth:`Api.live_fields`, written last, so they are appended), and the
``lastseen`` of a running app without pings (the original reports the current time):
its text holds a random marker that is replaced on every answer.

The text is exactly what :meth:`Api.render` encoded would be (tests compare the two on
every kind of change); whatever this module cannot split safely is rendered uncached.
"""

from __future__ import annotations

import operator
import secrets
from typing import TYPE_CHECKING, Any, Protocol

from patrol.api import tabjson
from patrol.api.wire import pretty

if TYPE_CHECKING:
    from patrol.engine.readside import ItemView, Reader

#: the item state's fields an item's text depends on (``running`` is ``started``'s;
#: ``history`` changes only with ``history_total``)
STATE_INPUTS = ("instance_id", "pid", "started", "lastseen", "disabled", "restart", "run_once", "cas", "keyvalue",
                "history_total")
#: the runner's properties it depends on (``config``: name, secret, and so visibility)
RUNNER_INPUTS = ("group", "config", "phase", "restarts", "backoff_delay", "last_exit", "last_reason", "fault_message",
                 "ping_transport")

_state_inputs = operator.attrgetter(*STATE_INPUTS)
_runner_inputs = operator.attrgetter(*RUNNER_INPUTS)
_CLOSE_TEXT = "\n\t\t}"  # how an item's object ends, two levels deep
_CLOSE = _CLOSE_TEXT.encode()


class Renderer(Protocol):
    """What of :class:`patrol.api.handler.Api` the cache renders with."""

    @property
    def patrol(self) -> "Reader": ...

    def render(self, runner: "ItemView", *, proven: bool, stats: bool = False) -> dict[str, Any]: ...

    def render_fields(self, runner: "ItemView", *, proven: bool, now: str | None = None) -> dict[str, Any]: ...

    def live_fields(self, runner: "ItemView", *, stats: bool) -> dict[str, Any]: ...

    def _time(self, ts: float | None) -> str: ...


class StatusItems:
    """The cache of one :class:`Api`'s ``/status/`` items (see the module docstring)."""

    def __init__(self, api: Renderer) -> None:
        self.api = api
        #: the stand-in for "now" inside a cached text: random, so no item's own
        #: text (a name, a key/value) can contain it
        self._now = "\x00now-" + secrets.token_hex(16)
        self._now_text = tabjson.dumps(self._now)
        self._items: dict[Any, tuple[tuple[Any, ...], bytes, bytes | None]] = {}

    def entry(self, item_id: str, runner: "ItemView", *, stats: bool, now: bytes | None = None) -> bytes:
        """``"\\n\\t\\t" + pretty(item_id) + ": " + pretty(api.render(runner, proven=False,
        stats=stats), level=2)``, encoded, from the cache. ``now``: the answer's time,
        encoded (one per answer, not one per item; None: the current time)."""
        api = self.api
        # one flat tuple (two nested ones cost ~110 bytes more per item, kept per item)
        key = (item_id, api.patrol.config, *_state_inputs(runner.state), *_runner_inputs(runner))
        cached = self._items.get(runner)
        if cached is None or cached[0] != key:
            cached = self._write(runner, key)
            if cached is None:
                item = pretty(api.render(runner, proven=False, stats=stats), level=2)
                return ("\n\t\t" + pretty(item_id) + ": " + item).encode()
            self._items[runner] = cached
        _, head, after_now = cached
        if after_now is not None:  # lastseen is "now": the one thing between head and the rest
            if now is None:
                now = pretty(api._time(api.patrol.wall())).encode()
            head = head + now + after_now
        live = api.live_fields(runner, stats=stats)
        if not live:
            return head + _CLOSE
        # a loop, not a generator: ~4 live fields per item, 500 items per answer
        text = []
        for name, value in live.items():
            kind = type(value)
            text.append(_FIELDS.get(name) or _field(name))
            if kind is float:
                text.append(_float_text(value))
            elif kind is int or kind is bool:
                text.append(tabjson.scalar(value))
            else:
                text.append(pretty(value, level=3))
        return head + "".join(text).encode() + _CLOSE

    def forget_others(self, runners: list[Any]) -> None:
        """Drop the texts of items that are gone (a reload replaced them)."""
        if len(self._items) > 2 * len(runners):
            present = set(runners)
            self._items = {k: v for k, v in self._items.items() if k in present}

    def _write(self, runner: "ItemView", key: tuple[Any, ...]) -> tuple[tuple[Any, ...], bytes, bytes | None] | None:
        text = pretty(self.api.render_fields(runner, proven=False, now=self._now), level=2)
        if not text.endswith(_CLOSE_TEXT):
            return None  # an empty object: never for a real item (it always has a state)
        text = "\n\t\t" + pretty(key[0]) + ": " + text[: -len(_CLOSE_TEXT)]
        parts = [part.encode() for part in text.split(self._now_text)]
        if len(parts) == 1:
            return key, parts[0], None
        if len(parts) == 2:
            return key, parts[0], parts[1]
        return None


def _field(name: str) -> str:
    """How a live field starts, after the fields before it."""
    return ",\n\t\t\t" + tabjson.dumps(name) + ": "


#: :func:`_field` of the live fields every answer has, looked up without a call
_FIELDS = {name: _field(name) for name in ("uptime", "ready", "cpu-percent", "rss-bytes", "readiness", "liveness",
                                           "status-text", "instance-of", "instance")}
_float_text = tabjson.float_text
