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
from patrol.plugin.states import ItemState


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
    # what status_inputs reads: each runner's own (attributes or properties)
    config: Any
    last_exit: ExitStatus | None
    last_reason: str
    fault_message: str | None
    ping_transport: str | None
    backoff_delay: float

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

    def status_inputs(self) -> tuple[Any, ...]:
        """What the item's reported fields are computed from, besides its state and
        Patrol's config: ``/status/``'s cache key (the values of
        :data:`patrol.api.status_items.RUNNER_INPUTS`; a test compares the two), read
        without their properties: each property read was ~7 % of a ``/status/`` answer."""
        return (self.group, self.config, self.current_phase(), self.starts, self.backoff_delay,
                self.last_exit, self.last_reason, self.fault_message, self.ping_transport)

    @property
    def phase(self) -> ItemState:
        """The state operators see (new in the API, beside the original's flags)."""
        return self.current_phase()

    def current_phase(self) -> ItemState:
        """:attr:`phase`, computed."""
        raise NotImplementedError

    def emit(self, name: str, **extra: Any) -> None:
        self.sup.emit(name, self, **extra)

    def wake(self) -> None:
        """A dependency changed: look at the conditions again (soon, on the loop)."""
        raise NotImplementedError
