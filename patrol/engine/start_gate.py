"""Whether an item that should run may be started now: the startup grace, and its
``depends-on`` conditions.

A part each runner owns. Right after Patrol starts, an app whose keepalive asks for a
startup grace is not spawned for that long: an instance that outlived Patrol may report
in first (a ping, a pid file). Then, while a condition it depends on does not hold
(:mod:`patrol.engine.depends` judges them), the item is not started either. Both show
as state ``waiting`` with ``last-reason`` saying for what; ``app.waiting``
(``service.waiting``) is emitted each time the dependency reason changes.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Callable, Protocol

from patrol.engine.host import Host
from patrol.plugin.model import AppConfig, ServiceConfig


class GateOwner(Protocol):
    sup: Host
    group: str
    id: str
    last_reason: str

    @property
    def config(self) -> AppConfig | ServiceConfig: ...

    @property
    def log(self) -> Any: ...

    @property
    def ping_transport(self) -> str | None: ...

    def wake(self) -> None: ...

    def emit(self, name: str, **extra: Any) -> None: ...


class StartGate:
    """What one item waits for before it starts (see the module docstring).

    ``grace(owner)``: the startup grace in seconds (apps; None: the item has none). A
    function every item shares, called with the owner: not a bound method per item.
    """

    #: one per app (thousands at once): no per-object __dict__
    __slots__ = ("owner", "grace", "_grace", "reason")

    def __init__(self, owner: GateOwner, grace: Callable[[Any], float] | None = None) -> None:
        self.owner = owner
        self.grace = grace
        self._grace: asyncio.TimerHandle | None = None
        self.reason = ""  # the dependency it waits for now ("" = none)

    @property
    def waiting(self) -> bool:
        return self._grace is not None or bool(self.reason)

    def holds(self) -> bool:
        """True while the item must not start yet (its reason is set and shown)."""
        return self._in_grace() or self._dependencies()

    def _in_grace(self) -> bool:
        if self._grace is not None:
            return True
        if self.grace is None:
            return False
        owner = self.owner
        left = owner.sup.started_mono + self.grace(owner) - owner.sup.now()
        if left <= 0:
            return False
        self._grace = owner.sup.loop.call_later(left, self._grace_over)
        up_to = f"up to {math.ceil(left)} s"
        if owner.ping_transport is not None:
            owner.last_reason = f"waiting for the first ping ({up_to})"
        else:
            owner.last_reason = f"waiting for a running instance to be adopted ({up_to})"
        return True

    def _grace_over(self) -> None:
        self._grace = None
        if self.owner.last_reason.startswith("waiting for "):
            self.owner.last_reason = ""
        self.owner.wake()

    def _dependencies(self) -> bool:
        owner = self.owner
        reason = owner.sup.dependencies.waiting_for(owner.config) or ""
        if reason == self.reason:
            return bool(reason)
        before, self.reason = self.reason, reason
        owner.sup.dependencies.changed(owner)  # its dependents' reasons may name this wait
        if reason:
            owner.last_reason = reason
            owner.log.info("waiting", reason=reason)
            owner.emit(f"{owner.group}.waiting", reason=reason)
            return True
        if owner.last_reason == before:
            owner.last_reason = ""
        owner.log.info("dependencies met", was=before)
        return False

    def clear(self) -> None:
        """The item runs, or will not start for another reason: it waits for no dependency."""
        if self.reason and self.owner.last_reason == self.reason:
            self.owner.last_reason = ""
        self.reason = ""

    def cancel(self) -> None:
        """The runner is retired: no more timers."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
