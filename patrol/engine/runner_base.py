"""What an app's runner and a service's runner share: how readers and dependents see them.

Readers (:mod:`patrol.engine.readside`) and dependents (:mod:`patrol.engine.depends`)
ask both kinds of runner the same questions; the answers that do not depend on the kind
are given once, here.
"""

from __future__ import annotations

from typing import Any

from patrol.engine.health import Health
from patrol.engine.host import Host
from patrol.engine.item_state import State
from patrol.plugin.keepalive import ExitStatus


class RunnerBase:
    """The shared answers of :class:`~patrol.engine.app_runner.AppRunner` and
    :class:`~patrol.engine.service_runner.ServiceRunner`."""

    __slots__ = ()  # (AppRunner is slotted: thousands at once)

    sup: Host
    group: str  # "app" or "service"
    id: str
    logger: Any  # the kind's logger (a class attribute), bound to the item by ``log``
    state: State
    starts: int
    start_failures: int = 0  # starts that failed: spawn or start command, or never seen running (metrics)
    health: Health  # readiness (and an app's liveness) of the current run
    #: how the last run ended while this Patrol ran (services never complete: always None)
    completion: ExitStatus | None = None

    @property
    def log(self) -> Any:
        """The logger bound to this item (``app=<id>`` or ``service=<id>``), bound at each
        use: a bound logger kept per item is ~300 B, and most items log a few lines in
        their life."""
        return self.logger.bind(**{self.group: self.id})

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    @property
    def running(self) -> bool:
        """A run is on, whether ready or not."""
        return self.state.running

    @property
    def ready(self) -> bool:
        return self.health.ready

    def emit(self, name: str, **extra: Any) -> None:
        self.sup.emit(name, self, **extra)

    def wake(self) -> None:
        """A dependency changed: look at the conditions again (soon, on the loop)."""
        raise NotImplementedError
