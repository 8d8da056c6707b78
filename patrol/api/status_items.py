"""``/status/``'s items, each written once per change: cached TAB-indented fragments.

A ``/status/`` answer at 500 apps is 500 items rendered and encoded, and between two
polls almost none of them changed. So each item's text is kept together with every
input it was rendered from (the runner's :meth:`status_inputs`, its state's ``cas``), and is
reused while those inputs compare equal. Any change makes a new key and a new text: a
session of the item's state (it bumps ``cas``: key/values, flags, the instance, a new
history record), a new phase, restart count, backoff, exit, reason or
fault, a new configuration (a reload makes new config objects), or a new
``json-timestamp`` layout. What changes without a change session is written fresh on
every answer: ``uptime``, readiness and the probes' answers, ``cpu-percent`` and
``rss-bytes`` (:meth:`Api.live_fields`, written last, so they are appended; the usual
ones written directly, without the dictionary), and the
``lastseen`` of a running app without pings (the original reports the current time):
its text holds a random marker that is replaced on every answer.

The text is exactly what :meth:`Api.render` encoded would be (tests compare the two on
every kind of change); whatever this module cannot split safely is rendered uncached.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Protocol

from patrol.api import tabjson
from patrol.api.wire import pretty

if TYPE_CHECKING:
    from patrol.engine.readside import ItemView, Reader
    from patrol.util.steps import Chunks, Steps

#: what of the item's state its text depends on: ``cas`` stands for every field, since
#: each change to one is made in a change session, which bumps it (tests set each field
#: the renderer reads in a session and check that ``cas`` moved)
STATE_INPUTS = ("cas",)
#: the runner's properties it depends on (``config``: name, secret, and so visibility;
#: ``starts``: ``restarts`` is derived from it), read by the runner's ``status_inputs()``
#: without a property call (a test compares the two)
RUNNER_INPUTS = ("group", "config", "phase", "starts", "backoff_delay", "last_exit", "last_reason", "fault_message",
                 "ping_transport")

#: items per :meth:`Steps.owed` call
BATCH = 8
_CLOSE_TEXT = "\n\t\t}"  # how an item's object ends, two levels deep
_CLOSE = _CLOSE_TEXT.encode()


class Renderer(Protocol):
    """What of :class:`patrol.api.handler.Api` the cache renders with."""

    @property
    def patrol(self) -> "Reader": ...

    def render(self, runner: "ItemView", *, proven: bool, stats: bool = False) -> dict[str, Any]: ...

    def render_fields(self, runner: "ItemView", *, proven: bool, now: str | None = None) -> dict[str, Any]: ...

    def live_fields(self, runner: "ItemView", *, stats: bool) -> dict[str, Any]: ...


class StatusItems:
    """The cache of one :class:`Api`'s ``/status/`` items (see the module docstring)."""

    def __init__(self, api: Renderer) -> None:
        self.api = api
        #: the stand-in for "now" inside a cached text: random, so no item's own
        #: text (a name, a key/value) can contain it
        self._now = "\x00now-" + secrets.token_hex(16)
        self._now_text = tabjson.dumps(self._now)
        self._items: dict[Any, list[Any]] = {}  # runner -> its entry (:meth:`_write`)

    async def write(self, runners: list[tuple[str, "ItemView"]], *, stats: bool, now: bytes, steps: "Steps",
                    out: "Chunks") -> None:
        """One table's items (``apps`` or ``service``) into ``out``, each
        ``"\\n\\t\\t" + pretty(item_id) + ": " + pretty(api.render(runner, proven=False,
        stats=stats), level=2)`` encoded, ``{`` before the first and ``,`` before the
        others; ``now``: the answer's time, encoded (the ``lastseen`` of running apps
        without pings); ``steps`` gives the loop a turn between items. One loop for the
        table, no call per item that can be spared, the common live fields written as
        bytes without a dictionary: 21.6 M -> 7.3 M instructions per answer at 500 apps
        over the last two rounds (callgrind, in-process)."""
        patrol = self.api.patrol
        wall, config, reading_of = patrol.wall, patrol.config, patrol.cpu.reading
        items = self._items
        pieces: list[bytes] = []  # this step's, handed to ``out`` at each turn (one call, not one per item)
        add = pieces.append

        async def turn(units: int) -> None:
            """The loop's turn; what the step wrote goes to ``out`` first."""
            out.extend(pieces)
            pieces.clear()
            await steps.turn(units)

        separator = b"{"
        left = 0  # items left of the batch the step was asked for
        # (one function for the whole item: each call saved is ~1 % of the answer)
        for item_id, runner in runners:
            # a unit per item, asked for a batch at a time (a call per item was ~4 % of the
            # answer); a unit more per history record when the item's text is written
            # (below): a cached text costs the same whatever its history
            if left:
                left -= 1
            else:
                left = BATCH - 1
                if steps.owed(BATCH):  # (no coroutine per item: Steps.take's cost, without it)
                    await turn(BATCH)
            st = runner.state
            # the text up to the live fields, the cached one while its key holds (one flat
            # tuple: two nested ones cost ~110 bytes more per item, kept per item); config:
            # Patrol's (a reload, or a new json-timestamp, makes a new one); the item's state
            # by its ``cas`` alone: every change to its fields is made in a change session,
            # which bumps it (the state file's restore, the one other writer, runs before
            # the first answer)
            key = (item_id, config, st.cas) + runner.status_inputs()  # (RUNNER_INPUTS's values)
            entry = items.get(runner)
            if entry is None or entry[0] != key:
                history = len(st.history)
                if history and steps.owed(history):  # a long history is a step of its own
                    await turn(history)
                    key = (item_id, config, st.cas) + runner.status_inputs()  # (as it is now)
                entry = self._write(runner, key)
                if entry is None:  # an item this cache cannot split: rendered whole
                    add(separator + self._uncached(item_id, runner, stats))
                    separator = b","
                    continue
                items[runner] = entry
            add(separator)
            separator = b","
            add(entry[1])
            after_now = entry[2]
            if after_now is not None:  # lastseen is "now": the one thing between head and the rest
                add(now)
                add(after_now)
            # the live fields (Api.live_fields): most items have no probe answers, no status
            # line of their own and are no copy of a set (an instance copy's config says
            # so); theirs (uptime, ready, the process's CPU and memory) are written here
            # directly, the others through the renderer's dictionary (tests compare both
            # ways for each kind of field)
            health = runner.health
            if (health.loops and health.probes()) or health.status_text is not None \
                    or getattr(runner.config, "instance_of", None):
                add(self._live_fields(runner, stats))
                add(_CLOSE)
                continue
            started = st.started  # (_tenths's usual case inline, written as bytes)
            if started is not None:
                up = wall() - started
                add(_UPTIME_BYTES + (b"%.1f" % up if 0.0 < up < 1e15 else _tenths(up).encode()))
            add(_READY_BYTES if health.ready else _NOT_READY_BYTES)
            pid = st.pid
            if stats and pid and runner.group == "app":
                # the process's CPU share and memory, written once per sampler reading
                reading = reading_of(pid)
                if reading is not None:
                    if reading is not entry[3]:
                        usage = reading.usage
                        cpu_share = usage.cpu_percent
                        entry[3] = reading
                        entry[4] = (_CPU + ("%.1f" % cpu_share if 0.0 < cpu_share < 1e15 else _tenths(cpu_share))
                                    + _RSS + _int_text(usage.rss) + _CLOSE_TEXT).encode()
                    add(entry[4])
                    continue
            add(_CLOSE)
        out.extend(pieces)

    def _uncached(self, item_id: str, runner: "ItemView", stats: bool) -> bytes:
        item = pretty(self.api.render(runner, proven=False, stats=stats), level=2)
        return ("\n\t\t" + pretty(item_id) + ": " + item).encode()

    def _live_fields(self, runner: "ItemView", stats: bool) -> bytes:
        live = self.api.live_fields(runner, stats=stats)
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
        return "".join(text).encode()

    def forget_others(self, runners: list[Any]) -> None:
        """Drop the texts of items that are gone (a reload replaced them)."""
        if len(self._items) > 2 * len(runners):
            present = set(runners)
            self._items = {k: v for k, v in self._items.items() if k in present}

    def _write(self, runner: "ItemView", key: tuple[Any, ...]) -> list[Any] | None:
        text = pretty(self.api.render_fields(runner, proven=False, now=self._now), level=2)
        if not text.endswith(_CLOSE_TEXT):
            return None  # an empty object: never for a real item (it always has a state)
        text = "\n\t\t" + pretty(key[0]) + ": " + text[: -len(_CLOSE_TEXT)]
        parts = [part.encode() for part in text.split(self._now_text)]
        if len(parts) > 2:
            return None
        # [key, head, the text after "now" (or None), the CPU reading the last slot was written from, that text]
        return [key, parts[0], parts[1] if len(parts) == 2 else None, None, b""]


def _field(name: str) -> str:
    """How a live field starts, after the fields before it."""
    return ",\n\t\t\t" + tabjson.dumps(name) + ": "


#: :func:`_field` of the live fields every answer has, looked up without a call
_FIELDS = {name: _field(name) for name in ("uptime", "ready", "cpu-percent", "rss-bytes", "readiness", "liveness",
                                           "status-text", "instance-of", "instance")}
_float_text = tabjson.float_text


def _tenths(value: float) -> str:
    """``_float_text(round(max(0.0, value), 1))``, what the renderer writes for an uptime
    or a CPU share, in one conversion instead of three (``round`` to a digit and ``repr``
    each convert the float to decimal): for a finite value in [0, 1e15) ``"%.1f"`` is the
    same text (both round correctly to a tenth, and the nearest float to that tenth
    prints as it); tests compare the two over the whole range."""
    if 0.0 < value < 1e15:
        return "%.1f" % value
    return "0.0" if value == 0.0 else _float_text(round(max(0.0, value), 1))  # (-0.0 too)

_int_text = int.__repr__
_UPTIME, _CPU, _RSS = _FIELDS["uptime"], _FIELDS["cpu-percent"], _FIELDS["rss-bytes"]
_UPTIME_BYTES = _UPTIME.encode()
_READY_BYTES, _NOT_READY_BYTES = (_FIELDS["ready"] + "true").encode(), (_FIELDS["ready"] + "false").encode()
