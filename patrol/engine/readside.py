"""The engine as its readers see it: what the API's answers, the GUI and events show.

Readers get these narrow views, never a runner's internals, so what a page or an
answer shows cannot depend on how a runner works inside, and the engine can change its
runners without touching the pages. Both runners and the supervisor implement them
(checked by the type checker); writes go through the API (:mod:`patrol.api.handler`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

from patrol.engine.cpu import CpuSampler
from patrol.engine.health import ProbeStatus
from patrol.engine.item_state import State
from patrol.plugin.keepalive import ExitStatus
from patrol.plugin.loader import Plugins
from patrol.plugin.model import AppConfig, PatrolConfig, ServiceConfig
from patrol.plugin.states import ItemState


class ItemView(Protocol):
    """An app or a service, read-only."""

    @property
    def group(self) -> str:
        """``"app"`` or ``"service"``."""

    @property
    def id(self) -> str: ...

    @property
    def config(self) -> AppConfig | ServiceConfig: ...

    @property
    def state(self) -> State:
        """The CAS-managed record: flags, key/values, the live instance, history."""

    @property
    def phase(self) -> ItemState: ...

    def status_inputs(self) -> tuple[Any, ...]:
        """What the item's reported fields are computed from besides its state and
        Patrol's config: the values of ``patrol.api.status_items.RUNNER_INPUTS``."""

    @property
    def restarts(self) -> int: ...

    @property
    def starts(self) -> int:
        """Runs started so far (``restarts`` is one fewer)."""

    @property
    def start_failures(self) -> int:
        """Starts that failed: a spawn, or a service's start command, failed, or the
        process ended before it was seen running."""

    @property
    def backoff_delay(self) -> float:
        """Seconds the current backoff waits (meaningful in state ``backoff``)."""

    @property
    def last_reason(self) -> str:
        """Why the last instance ended, or why nothing runs now."""

    @property
    def last_exit(self) -> ExitStatus | None:
        """How the last process of an app ended (services: None)."""

    @property
    def fault_message(self) -> str | None:
        """A problem that does not end the instance (apps only)."""

    @property
    def ping_transport(self) -> str | None:
        """The transport whose pings keep an app alive; None when not ping-based."""

    @property
    def ready(self) -> bool:
        """The run is ready: every readiness source it has says so (none: it runs)."""

    @property
    def health(self) -> "HealthView":
        """Its probes' last answers and its own status line."""


class HealthView(Protocol):
    """An item's readiness and liveness, read-only."""

    @property
    def status_text(self) -> str | None:
        """The app's own one-line status (sd_notify's ``STATUS=``)."""

    @property
    def has_source(self) -> bool:
        """It has a readiness probe, or a keepalive that reports readiness."""

    @property
    def ready(self) -> bool:
        """The current run is ready (every source says so, or there is none)."""

    @property
    def loops(self) -> Mapping[str, object]:
        """The probe loops of this run by kind (empty for most items: then
        :meth:`probes` has no answer, and ``/status/`` does not ask it)."""

    def probes(self) -> Mapping[str, ProbeStatus]:
        """``readiness`` / ``liveness`` -> the last answer in this run."""

    def note(self) -> str:
        """Why a running item is not ready ("" when it is, or has no readiness)."""


class AppView(ItemView, Protocol):
    """An app, read-only (its config has the log directory and the program)."""

    @property
    def config(self) -> AppConfig: ...


class LogOutput(Protocol):
    """The apps' output as Patrol writes it (the log router)."""

    @property
    def writing(self) -> Mapping[str, int]:
        """Log files an instance's output may still go to (path -> its size limit): a
        reader of an ended instance's file waits for it to be complete before moving on."""

    def order(self, app_id: str, lines: int) -> list[tuple[str, int]]:
        """(stream, lines) runs of the last ``lines`` lines of the app's last instance,
        oldest first: how its stdout and stderr interleave (fewer when not known)."""


class Reader(Protocol):
    """The running Patrol, read-only."""

    @property
    def config(self) -> PatrolConfig: ...

    @property
    def instance_id(self) -> str:
        """This run of Patrol (a uuid)."""

    @property
    def started(self) -> float | None:
        """When it started (wall clock), None before and after."""

    @property
    def shutting_down(self) -> bool: ...

    @property
    def wall(self) -> Callable[[], float]:
        """The wall clock every timestamp comes from."""

    @property
    def cpu(self) -> CpuSampler:
        """The one CPU and memory sampler."""

    @property
    def apps(self) -> Mapping[str, AppView]: ...

    @property
    def store_error(self) -> str | None:
        """Why the state file refuses writes; None while it takes them."""

    @property
    def store_error_since(self) -> float | None:
        """Since when it refuses them (wall clock)."""

    @property
    def log_output(self) -> "LogOutput":
        """What the engine knows of the apps' output beyond the files."""

    @property
    def plugins(self) -> Plugins:
        """The loaded plugins: which failed, and how often their calls failed."""

    def runners(self) -> Sequence[ItemView]: ...

    def find(self, group: str, item_id: str) -> ItemView | None: ...
