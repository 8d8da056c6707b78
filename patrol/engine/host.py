"""What a runner may use of the supervisor that hosts it.

Runners are handed this narrow interface, not the supervisor class, so the engine's
modules import each other one way only (the supervisor imports its runners, never the
reverse) and a runner's dependencies can be read here in one place.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable, Protocol

from patrol.plugin.loader import Plugins
from patrol.plugin.model import PatrolConfig

if TYPE_CHECKING:
    from patrol.engine.depends import Dependencies
    from patrol.engine.logrouter import LogRouter
    from patrol.engine.ownership import Ownership
    from patrol.engine.reaper import Reaper
    from patrol.engine.spawn_batch import SpawnBatch


class Host(Protocol):
    """The supervisor as its runners see it."""

    #: the running config (a reload replaces it)
    config: PatrolConfig
    #: loaded plugins: which plugin provides a method, for messages
    plugins: Plugins
    #: the loop that owns every runner's state
    loop: asyncio.AbstractEventLoop
    #: the one reaper: exit statuses of Patrol's children
    reaper: "Reaper"
    #: which process is whose: the proof behind every signal
    owners: "Ownership"
    #: the work after each spawn of a start burst, done once the burst is spawned
    spawns: "SpawnBatch"
    #: every app's output pipes and log files
    logs: "LogRouter"
    #: Patrol is stopping: runners start nothing new
    shutting_down: bool
    #: monotonic time the supervisor started (the start of every startup grace)
    started_mono: float
    #: depends-on: what an item waits for, and whom to tell when it changes
    dependencies: "Dependencies"
    #: monotonic clock for deadlines, wall clock for timestamps
    now: Callable[[], float]
    wall: Callable[[], float]

    def emit(self, name: str, runner: Any = None, **extra: Any) -> None:
        """Deliver a lifecycle event (see :mod:`patrol.plugin.events`)."""

    def ended(self, runner: Any, start_failed: bool = False) -> bool:
        """An app's run ended by itself: True when that ends Patrol (``exit-with``)."""

    def instances(self, set_id: str) -> int:
        """How many copies the set of instances ``set_id`` has now."""



class Attached(Protocol):
    """Something that runs beside the supervisor on its loop (the transports)."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class EventSink(Protocol):
    """Where lifecycle events go: renders them for the ``patrol_trigger`` observers."""

    def wanted(self) -> bool:
        """False when nobody observes: then no event is even built."""

    def emit(self, name: str, runner: Any, **extra: Any) -> None: ...
