"""What the parts of an app's supervision may use of the runner that owns them.

An app is supervised by a runner (:mod:`patrol.engine.app_runner`, the policy) and three
parts it owns: the current run (:mod:`~patrol.engine.app_instance`), the stopping of its
processes (:mod:`~patrol.engine.app_stop`) and what its keepalive plugin is handed
(:mod:`~patrol.engine.app_control`). The parts see the runner through this protocol,
not its class, so the modules import one way only: the runner imports its parts.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from patrol.engine.health import Health
from patrol.engine.host import Host
from patrol.engine.item_state import State
from patrol.plugin.keepalive import ExitStatus, KeepAlive
from patrol.plugin.model import AppConfig


class KeepaliveCalls(Protocol):
    """The isolated calls into the keepalive plugin, and its report of a death."""

    def call(self, method: str, *args: Any) -> Any: ...

    def dead(self, reason: str, status: ExitStatus | None = None) -> None: ...


class AppOwner(Protocol):
    """The runner of one app, as its parts see it."""

    sup: Host
    config: AppConfig
    id: str
    key: str  # the owner name of its processes (``app/<id>``)
    state: State
    keepalive: KeepAlive
    health: Health  # readiness and liveness of the run

    @property
    def plugin(self) -> str: ...  # the keepalive's plugin, for messages

    @property
    def log(self) -> Any: ...  # a structlog logger bound to the app

    retired: bool
    fault_message: str | None
    last_exit: ExitStatus | None
    last_reason: str
    start_failures: int  # starts that failed (the metrics count them)
    plugin_error: str
    stop_reason: str
    stop_task: asyncio.Task[None] | None

    @property
    def control(self) -> KeepaliveCalls:
        """The keepalive's side of the app (:mod:`patrol.engine.app_control`)."""

    def owns(self, pid: int) -> bool: ...

    def now(self) -> float: ...

    def emit(self, name: str, **extra: Any) -> None: ...

    def new_run(self, pid: int, tentative: bool, event: str) -> None: ...

    def close(self, reason: str, status: ExitStatus | None) -> None: ...

    def forget_run(self) -> None: ...

    def after_death(self, uptime: float, start_failed: bool = False) -> None: ...

    def reconcile(self) -> None: ...

    def begin_stop(self, reason: str, sig: int) -> None: ...

    def fail_run(self, reason: str) -> None: ...
