"""The states an app or a service is in, as the API, the GUI, the CLI and events name them.

One enum, so a state cannot be spelled one way in the engine and another in a page: the
engine's runners report a member (``phase``), the API and events carry its value, the
OpenAPI document lists :data:`APP_STATES` and :data:`SERVICE_STATES`, the GUI shows
:attr:`ItemState.label` and sorts in the order the members are defined, the client
prints the value, and docs/api.md describes each (a test keeps them in step).
"""

from __future__ import annotations

import enum


class ItemState(enum.StrEnum):
    """What an item is doing now (the order is the dashboard's state order)."""

    RUNNING = "running"  # (with a readiness probe or notify: started, not yet ready)
    READY = "ready"  # running, and its readiness probe (or its notify message) says it serves
    UNREADY = "unready"  # was ready; its readiness probe fails now (it is not restarted for it)
    STARTING = "starting"  # spawned (or a service's start command runs), not yet seen running
    STOPPING = "stopping"  # a stop signal was sent (or a service's stop command runs)
    RESTARTING = "restarting"  # a service's restart command runs
    BACKOFF = "backoff"  # failed quickly: the next start waits (``backoff`` says how long)
    GIVEN_UP = "given-up"  # an app reached its start-limit: no more starts until toggled
    EXITED = "exited"  # an app ended and its restart policy does not start it again until toggled
    WAITING = "waiting"  # not started yet: for its dependencies (depends-on), or for an app that
    # outlived Patrol to report in (the startup grace); ``last-reason`` says which
    STOPPED = "stopped"
    DISABLED = "disabled"

    @property
    def label(self) -> str:
        """How people read it (the GUI)."""
        return _LABELS.get(self, self.value)


_LABELS = {ItemState.BACKOFF: "backing off", ItemState.GIVEN_UP: "given up"}

#: the states an app can be in, and a service (as the OpenAPI document lists them)
APP_STATES = (ItemState.RUNNING, ItemState.READY, ItemState.UNREADY, ItemState.STARTING, ItemState.STOPPING,
              ItemState.STOPPED, ItemState.WAITING, ItemState.DISABLED, ItemState.BACKOFF, ItemState.GIVEN_UP,
              ItemState.EXITED)
SERVICE_STATES = (ItemState.RUNNING, ItemState.READY, ItemState.UNREADY, ItemState.STARTING, ItemState.STOPPING,
                  ItemState.RESTARTING, ItemState.STOPPED, ItemState.WAITING, ItemState.DISABLED, ItemState.BACKOFF)

#: the states of an item that has a live instance (it runs, whether ready or not)
LIVE_STATES = frozenset({ItemState.RUNNING, ItemState.READY, ItemState.UNREADY})
