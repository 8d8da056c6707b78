"""Big answers built in bounded steps, so that no request stalls the event loop.

Everything Patrol does runs on one asyncio loop. ``/status/`` or the dashboard of
10,000 apps is a second or more of pure Python work; done in one go, every ping,
child exit and other request waits that long (five such requests at once made pings
wait 4.5 s). A renderer instead asks :meth:`Steps.take` before each item, which hands
the loop back between steps. An item is never split (its state cannot change half-way
through its rendering), so a step holds at most ``limit`` units of work -- or one
single item that is bigger than that (an app with a long history) -- and lasts at most
about ``seconds`` beyond the item it is on.

Why steps rather than caching rendered items or paging: status entries carry the
uptime and CPU of the moment, so a cache would be stale at once; paging would change
the original's ``/status/`` answer and the dashboard's live filtering. Steps keep
every answer byte for byte what it was, and bound the stall whatever the item count.
Items rendered in different steps may be a few milliseconds apart in time, as if
read one after the other.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Callable, Iterable

#: longest a step may run before the loop gets a turn (the loop's stall budget is 50 ms)
STEP_SECONDS = 0.002
#: size of the pieces a big answer is sent in: joining megabytes at once is itself a
#: stall (10-20 ms for the 20 MB dashboard of 10,000 apps), and a piece at a time lets
#: the connection's flow control pace the sending
CHUNK_BYTES = 256 * 1024


class Steps:
    """A budget of work between two turns of the loop.

    :param limit: units of work per step (an item, a history record, a table row).
    :param seconds: a step also ends after this much time, whatever it did.
    """

    def __init__(self, limit: int, seconds: float = STEP_SECONDS,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self.used = 0
        self.since = clock()
        self.count = 1  # steps so far (for benchmarks and tests)

    async def take(self, units: int = 1) -> None:
        """Ask for ``units`` of work; the loop gets a turn first when they do not fit."""
        if self.owed(units):
            await self.turn(units)

    def owed(self, units: int = 1) -> bool:
        """:meth:`take` without a coroutine: counts ``units`` when they fit, else says the
        loop is owed a turn first (the caller then awaits :meth:`turn`, which counts them).
        For the hottest loops: ``/status/`` asks once per item, and a coroutine made and
        awaited per item was about a tenth of its answer."""
        used = self.used
        if used and (used + units > self.limit or self.clock() - self.since >= self.seconds):
            return True
        self.used = used + units
        return False

    async def turn(self, units: int = 1) -> None:
        """Give the loop its turn, then start a new step with ``units`` of work."""
        await asyncio.sleep(0)
        self.used = units
        self.since = self.clock()
        self.count += 1


class Chunks:
    """Bytes collected piece by piece and kept as chunks of about CHUNK_BYTES."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self._pending: list[bytes] = []
        self._size = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self._pending.append(data)
        self._size += len(data)
        self.total += len(data)
        if self._size >= CHUNK_BYTES:
            self._flush()

    def extend(self, pieces: list[bytes]) -> None:
        """:meth:`add` for a step's pieces at once (``/status/``: one call per step, not per
        item; joined, which is cheaper than measuring each); a chunk may then end up to a
        step's bytes past CHUNK_BYTES."""
        if pieces:
            self.add(b"".join(pieces))

    def done(self) -> list[bytes]:
        self._flush()
        return self.chunks

    def _flush(self) -> None:
        if self._pending:
            self.chunks.append(b"".join(self._pending))
            self._pending, self._size = [], 0


async def each(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` as the async iterator a streaming response sends, one per turn
    (a plain iterable would be read in a worker thread)."""
    for chunk in chunks:
        yield chunk
