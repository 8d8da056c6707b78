"""The event stream: every lifecycle event, numbered, kept a while, handed to subscribers.

The events are those ``patrol_trigger`` observers get (:mod:`patrol.plugin.events`),
rendered the same way (what a caller without the item's secret may see), written once
as a Server-Sent Events frame and shared by every subscriber (``GET /events``, the
GUI's live pages, ``patrol events -f``).

Rules:

* **Ids.** Each event kept for resuming gets the id ``<run>:<n>``: ``<run>`` names this
  run of Patrol (the first 8 characters of its instance id), ``n`` counts 1, 2, 3, ...
  without gaps. A client that reconnects with ``Last-Event-ID`` gets every event after
  that one that is still in the buffer (the last :data:`BUFFER`), then the live ones.
  When the id is older than the buffer, from another run of Patrol, or not an id at
  all, the stream says so first (``event: stream.reset``, with the reason) and then
  sends everything the buffer holds: the client knows it must re-read ``/status/``.
* **Periodic events** (``patrol.tick``, ``*.running``, ``*.disabled``, ``app.pinged``)
  say "nothing changed" every tick or ping; with 1,000 apps they would push every
  change out of the buffer within a tick. They go only to subscribers that ask for
  them, carry no id and are never kept.
* **Slow consumers are dropped, never waited for.** Each subscriber has a queue of at
  most :data:`QUEUE` frames; :meth:`EventStream.publish` only appends to it. A
  subscriber whose queue is full is dropped at once (its connection is cut through
  ``on_drop``) and counted; the others and the loop go on as if it never existed.
* **Always kept**, from Patrol's start: ``patrol events`` shows the recent ones, and a
  client can resume however long it was away (within the buffer). That costs ~13 us
  per event (the snapshot and one JSON encoding), 13 ms for the 1,000 events of
  starting 500 apps.
* **Bounded.** At most :data:`MAX_SUBSCRIBERS` at once (each holds a connection for
  as long as it listens); more are refused.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from patrol.api.wire import GROUPS, dumps
from patrol.config.rules import is_app_service_id
from patrol.plugin.events import ALL_EVENTS, Event

#: events kept for clients that reconnect (about 1 KB each)
BUFFER = 1024
#: frames waiting for one subscriber before it is dropped
QUEUE = 256
#: subscribers at once
MAX_SUBSCRIBERS = 64
#: events sent only to subscribers that ask for them (see the module docstring)
PERIODIC = frozenset(("patrol.tick", "app.running", "app.disabled", "app.pinged", "service.running",
                      "service.disabled"))
#: the longest ``Last-Event-ID`` looked at
MAX_ID = 64
#: what a client should wait before reconnecting (ms), sent when a stream opens
RETRY_MS = 1000


@dataclass(frozen=True, slots=True)
class Frame:
    """One event as every subscriber gets it (up to :data:`BUFFER` are kept: a start of
    500 apps keeps ~1,000; slotted, each is ~80 bytes smaller than with a dict)."""

    seq: int  # its number (0: a periodic event, not numbered)
    name: str
    group: str
    item: str
    owner: str  # the set an instance belongs to (``instance-of``), or ""
    text: bytes  # the Server-Sent Events frame


@dataclass(frozen=True)
class Filter:
    """Which events a subscriber wants: every set given must match (empty: any)."""

    groups: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()  # an item id, or the id of a set of instances
    names: frozenset[str] = frozenset()
    periodic: bool = False

    def matches(self, frame: Frame) -> bool:
        if frame.seq == 0 and not self.periodic:
            return False
        if self.groups and frame.group not in self.groups:
            return False
        if self.ids and frame.item not in self.ids and frame.owner not in self.ids:
            return False
        return not self.names or frame.name in self.names


#: the query of ``GET /events``: what a subscriber may ask for
QUERY_KEYS = ("group", "id", "event", "periodic", "backlog", "follow", "heartbeat")
MAX_IDS = 100
HEARTBEAT = 15.0  # seconds between heartbeat comments, by default
HEARTBEAT_RANGE = (1.0, 300.0)
FLAGS = {"1": True, "true": True, "0": False, "false": False}


@dataclass(frozen=True)
class StreamQuery:
    """What a subscriber asked for (``GET /events?...``)."""

    filter: Filter
    heartbeat: float = HEARTBEAT
    backlog: int = 0  # start with the last N kept events (without Last-Event-ID)
    follow: bool = True  # False: send the backlog, then end


def parse_query(pairs: Iterable[tuple[str, str]]) -> StreamQuery | list[str]:
    """What a query asks for, or every problem with it, each naming the parameter and the rule."""
    problems: list[str] = []
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        if key not in QUERY_KEYS:
            problems.append(f"{key[:40]}: unknown query parameter (known: {', '.join(QUERY_KEYS)})")
            continue
        values.setdefault(key, []).append(value)
    groups = set()
    for group in values.get("group", []):
        canonical = "patrol" if group.lower() == "patrol" else GROUPS.get(group.lower())
        if canonical is None:
            problems.append(f"group: must be patrol, app or service (got {json.dumps(group[:40])})")
        groups.add(canonical or "")
    ids = {i.lower() for i in values.get("id", [])}
    if len(ids) > MAX_IDS:
        problems.append(f"id: at most {MAX_IDS} ids (got {len(ids)})")
    for item_id in sorted(ids)[:MAX_IDS]:
        if not is_app_service_id(item_id):
            problems.append(f"id: {json.dumps(item_id[:70])} is not an app or service id")
    names = set(values.get("event", []))
    for name in sorted(names - set(ALL_EVENTS))[:MAX_IDS]:
        problems.append(f"event: unknown event {json.dumps(name[:40])} (see docs/observability.md)")
    flags = {}
    for key, default in (("periodic", False), ("follow", True)):
        given = values.get(key, [""])[-1].lower()
        flags[key] = FLAGS.get(given, default)
        if given and given not in FLAGS:
            problems.append(f"{key}: must be 1 or 0 (got {json.dumps(given[:20])})")
    heartbeat = _number(values, "heartbeat", HEARTBEAT, HEARTBEAT_RANGE, problems)
    backlog = _number(values, "backlog", 0, (0, BUFFER), problems)
    if backlog != int(backlog):
        problems.append(f"backlog: must be a whole number of events from 0 to {BUFFER}")
    if problems:
        return problems
    wanted = Filter(frozenset(groups), frozenset(ids), frozenset(names), flags["periodic"])
    return StreamQuery(wanted, heartbeat, int(backlog), flags["follow"])


def _number(values: dict[str, list[str]], key: str, default: float, bounds: tuple[float, float],
            problems: list[str]) -> float:
    if key not in values:
        return default
    low, high = bounds
    try:
        number = float(values[key][-1])
    except ValueError:
        number = float("nan")
    if not low <= number <= high:  # NaN fails too
        problems.append(f"{key}: must be a number from {low:g} to {high:g}")
        return default
    return number


class TooManySubscribers(Exception):
    """:data:`MAX_SUBSCRIBERS` listen already."""


class Subscription:
    """One subscriber: what it missed (a backlog), then live frames, through a bounded queue."""

    def __init__(self, stream: "EventStream", wanted: Filter, backlog: Iterable[Frame | bytes], limit: int) -> None:
        self.stream = stream
        self.filter = wanted
        self.limit = limit
        self._backlog: deque[Frame | bytes] = deque(backlog)
        self._queue: deque[Frame] = deque()
        self._ready = asyncio.Event()
        self.closed = False
        self.dropped = False
        #: called once when the subscriber is dropped: the transport cuts its connection
        self.on_drop: Callable[[], None] | None = None

    def offer(self, frame: Frame) -> None:
        """A new frame (called by :meth:`EventStream.publish`: never waits)."""
        if self.closed:
            return
        if len(self._queue) >= self.limit:
            self.dropped = True
            self.stream.drop(self)
            return
        self._queue.append(frame)
        self._ready.set()

    async def next(self, timeout: float) -> Frame | bytes | None:
        """The next event; bytes to send as they are (the opening lines, a reset); ``b""``
        when nothing came within ``timeout`` seconds (time for a heartbeat); None when
        the stream ended (Patrol stops, or this one was dropped)."""
        while True:
            if self._backlog:
                return self._backlog.popleft()
            if self._queue:
                return self._queue.popleft()
            if self.closed:
                return None
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return b""

    def close(self, *, discard: bool = False) -> None:
        """End it: frames already queued are still handed out (unless ``discard``), then
        :meth:`next` ends."""
        if discard:
            self._backlog.clear()
            self._queue.clear()
        if not self.closed:
            self.closed = True
            self._ready.set()
            self.stream.forget(self)


class EventStream:
    """Numbers events, keeps the last :data:`BUFFER`, and fans them out.

    :param instance_id: this run of Patrol (its ids start with the first 8 characters).
    """

    def __init__(self, instance_id: str, *, buffer: int = BUFFER, queue: int = QUEUE,
                 max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        self.run = instance_id.replace("-", "")[:8]
        self.seq = 0
        self.buffer: deque[Frame] = deque(maxlen=buffer)
        self.queue = queue
        self.max_subscribers = max_subscribers
        self.subscribers: list[Subscription] = []
        #: subscribers dropped for not keeping up, since Patrol started
        self.dropped = 0
        self._periodic = 0  # subscribers that want the periodic events
        self._closed = False

    # -- publishing ------------------------------------------------------------------

    def wants(self, name: str) -> bool:
        """Is an event named ``name`` worth building now? (Periodic ones only when asked
        for; none once the stream is closed: no client can subscribe again, and a
        shutdown's 1,000 events of 500 apps were a fifth of its work.)"""
        return not self._closed and (name not in PERIODIC or self._periodic > 0)

    def publish(self, event: Event, time: str) -> None:
        """Number, keep and hand out one event; ``time`` is when it happened, as the API
        writes times. Costs one JSON encoding, whatever the number of subscribers."""
        if not self.wants(event.name):
            return
        data: dict[str, Any] = {"name": event.name, "time": time, "group": event.group, "id": event.id}
        if event.snapshot:
            data["snapshot"] = event.snapshot
        if event.record is not None:
            data["record"] = event.record
        if event.error is not None:
            data["error"] = event.error
        body = b"event: " + event.name.encode() + b"\ndata: " + dumps(data, pretty=False) + b"\n\n"
        owner = event.snapshot.get("instance-of", "")
        if event.name in PERIODIC:
            frame = Frame(0, event.name, event.group, event.id, owner if isinstance(owner, str) else "", body)
        else:
            self.seq += 1
            frame = Frame(self.seq, event.name, event.group, event.id, owner if isinstance(owner, str) else "",
                          self._id_line(self.seq) + body)
            self.buffer.append(frame)
        for subscriber in list(self.subscribers):
            if subscriber.filter.matches(frame):
                subscriber.offer(frame)

    def _id_line(self, seq: int) -> bytes:
        return f"id: {self.run}:{seq}\n".encode()

    # -- subscribing -----------------------------------------------------------------

    def subscribe(self, wanted: Filter, last_id: str | None, *, backlog: int = 0,
                  follow: bool = True) -> Subscription:
        """A new subscriber; ``last_id``: the ``Last-Event-ID`` it reconnects with (None:
        it starts with the last ``backlog`` kept events, then the live ones); with
        ``follow`` False it gets only what was kept. Raises :class:`TooManySubscribers`."""
        if self._closed:
            raise TooManySubscribers("Patrol is stopping")
        if follow and len(self.subscribers) >= self.max_subscribers:
            raise TooManySubscribers(f"{self.max_subscribers} clients follow the events already")
        opening: list[Frame | bytes] = [f"retry: {RETRY_MS}\n\n".encode()]
        if last_id is None and backlog:
            opening += [f for f in self.buffer if wanted.matches(f)][-backlog:]
        elif last_id is not None:
            after, reset = self._resume_point(last_id)
            if reset is not None:
                opening.append(self._id_line(after) + b"event: stream.reset\ndata: "
                               + dumps({"reason": reset, "after": f"{self.run}:{after}"}, pretty=False) + b"\n\n")
            opening += [f for f in self.buffer if f.seq > after and wanted.matches(f)]
        subscription = Subscription(self, wanted, opening, self.queue)
        if not follow:
            subscription.closed = True  # nothing live: the opening, then the end
            return subscription
        self.subscribers.append(subscription)
        if wanted.periodic:
            self._periodic += 1
        return subscription

    def _resume_point(self, last_id: str) -> tuple[int, str | None]:
        """(the number after which to replay, why the replay is not exact or None)."""
        oldest = self.buffer[0].seq - 1 if self.buffer else self.seq
        run, sep, number = last_id.strip()[:MAX_ID].partition(":")
        if not sep or not number.isdigit() or len(number) > 18:
            return oldest, "Last-Event-ID is not an id of this stream: events may have been missed"
        if run != self.run:
            return oldest, "Patrol restarted since that event: events may have been missed"
        seq = int(number)
        if seq > self.seq:
            return oldest, "Last-Event-ID names an event that never was: events may have been missed"
        if seq < oldest:
            return oldest, "events after Last-Event-ID are no longer kept: some were missed"
        return seq, None

    def forget(self, subscription: Subscription) -> None:
        if subscription in self.subscribers:
            self.subscribers.remove(subscription)
            if subscription.filter.periodic:
                self._periodic -= 1

    def drop(self, subscription: Subscription) -> None:
        """A subscriber fell :data:`QUEUE` frames behind: end it and cut its connection."""
        self.dropped += 1
        subscription.close(discard=True)
        if subscription.on_drop is not None:
            subscription.on_drop()

    def close(self) -> None:
        """Patrol stops: every stream ends (after the frames already queued)."""
        self._closed = True
        for subscription in list(self.subscribers):
            subscription.close()
