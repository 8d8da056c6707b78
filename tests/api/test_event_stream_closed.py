"""Events are not built for a stream that has ended (Patrol stopping): nobody can read them."""

from __future__ import annotations

from patrol.api.stream import EventStream, Filter, TooManySubscribers
from patrol.plugin.events import Event


def test_a_closed_stream_wants_no_event_and_keeps_none():
    stream = EventStream("0123456789abcdef")
    assert stream.wants("app.closed") and not stream.wants("patrol.tick")  # periodic: only when asked for
    stream.publish(Event("app.closed"), "now")
    kept = len(stream.buffer)
    stream.close()  # the HTTP transport stops: every stream ends, none can start
    assert not stream.wants("app.closed") and not stream.wants("app.shutdown")
    try:
        stream.subscribe(Filter(), None)
    except TooManySubscribers:
        pass
    else:
        raise AssertionError("a closed stream took a subscriber")
    assert len(stream.buffer) == kept == 1
