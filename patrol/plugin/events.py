"""Lifecycle events, delivered to observers through the ``patrol_trigger`` hook.

They mirror the original Patrol's triggers, at the same moments:

=====================  ====================================================================
``patrol.started``     the supervisor loop started, before the first tick
``patrol.tick``        top of every reconciliation tick
``patrol.stopped``     the loop stopped, before apps are stopped
``patrol.shutdown``    first shutdown request only
``app.start``          before every start attempt (after grace and disabled checks)
``app.started``        a spawn succeeded, or a running instance was discovered/adopted
``app.start_failed``   spawn or log setup failed (``error`` says why)
``app.started_pinged`` a ping with a pid created a new instance
``app.pinged``         a ping refreshed the running instance
``app.running``        every tick while running
``app.disabled``       every tick while not running and disabled
``app.closed``         an instance ended; ``record`` is its history record
``app.gave_up``        (new) the start limit was reached; Patrol stops restarting it
``app.ready``          (new) the run is ready: its readiness probe passed (or notify said so)
``app.unready``        (new) a ready run is no longer ready (``reason``: the probe's message)
``app.liveness_failed`` (new) liveness failed ``failure-threshold`` times: the run is restarted
``app.waiting``        (new) not started: a dependency's condition does not hold (``reason``)
``app.exited``         (new) it ended and its ``restart`` policy leaves it ended (state ``exited``)
``app.shutdown``       Patrol is shutting down
=====================  ====================================================================

Services have the same events under ``service.*``, without the ping events, without
``gave_up`` (a failing service start backs off but is never given up) and without
``liveness_failed`` (a service's status command is its liveness).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

PATROL_EVENTS = ("patrol.started", "patrol.tick", "patrol.stopped", "patrol.shutdown")
APP_EVENTS = (
    "app.start",
    "app.started",
    "app.start_failed",
    "app.started_pinged",
    "app.pinged",
    "app.running",
    "app.disabled",
    "app.closed",
    "app.gave_up",
    "app.exited",
    "app.shutdown",
    "app.ready",
    "app.unready",
    "app.liveness_failed",
    "app.waiting",
)
SERVICE_EVENTS = (
    "service.start",
    "service.started",
    "service.start_failed",
    "service.running",
    "service.disabled",
    "service.closed",
    "service.shutdown",
    "service.ready",
    "service.unready",
    "service.waiting",
)
ALL_EVENTS = PATROL_EVENTS + APP_EVENTS + SERVICE_EVENTS


@dataclass(frozen=True)
class Event:
    """One lifecycle event.

    ``group`` is ``"patrol"``, ``"app"`` or ``"service"``; ``id`` the app or service id
    (empty for Patrol events); ``snapshot`` the item's state as the API reports it to a
    caller without the item's secret (no history, no secret, and no key/values of an
    item with a secret: see patrol.api.visibility); ``record`` the history record for
    ``*.closed``, seen the same way;
    ``error`` the reason for ``*.start_failed``, ``*.gave_up`` and
    ``app.liveness_failed``; ``reason`` (plugin API 2.1) what ``*.waiting`` waits for
    and why a run became ``*.unready``.
    """

    name: str
    group: str = "patrol"
    id: str = ""
    snapshot: Mapping[str, Any] = field(default_factory=dict)
    record: Mapping[str, Any] | None = None
    error: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.name not in ALL_EVENTS:
            raise ValueError(f"unknown event {self.name!r}")
