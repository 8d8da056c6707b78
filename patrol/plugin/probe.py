"""The probe interface: how a plugin checks an item's readiness or health.

A probe answers one question, once: is the item ready (``readiness``) or alive
(``liveness``)? Patrol decides when to ask (``initial-delay``, ``period``), how long an
answer may take (``timeout``: a probe still busy then is cancelled and counts as a
failure) and what a streak of answers means (``success-threshold``,
``failure-threshold``), the way Kubernetes does. The probe itself only looks.

A probe is a class with a ``name`` (what users write as the key of the probe in
``"readiness": {"<name>": <settings>, ...}``), registered with
``patrol_register_probes``. Patrol creates one instance per run of an item and calls
:meth:`Probe.check` from the event loop: it must never block. Network probes use
asyncio's own I/O; a probe that runs a program asks its :class:`ProbeTarget` to
(:meth:`ProbeTarget.run`: the kernel's one spawn path, with the app's environment,
reaped by the one reaper, its process group killed at the timeout).

A complete probe::

    from patrol import Probe, ProbeResult, hookimpl

    class Always(Probe):
        name = "always"
        async def check(self):
            return ProbeResult(True, "always fine")

    @hookimpl
    def patrol_register_probes(register):
        register(Always)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence

from patrol.plugin.keepalive import Cancellable, ExitStatus
from patrol.plugin.model import AppConfig, Option, ServiceConfig


@dataclass(frozen=True)
class ProbeResult:
    """One answer of a probe: ``ok`` and a short message people read (API, GUI, CLI)."""

    ok: bool
    message: str = ""


@dataclass(frozen=True)
class CommandOutcome:
    """How a program run by :meth:`ProbeTarget.run` ended.

    ``status`` is None when it could not be started (``error`` says why); ``output`` is
    its stdout and stderr together, cut at 64 KiB; ``timed_out``: it was killed, with
    its whole process group, at the timeout.
    """

    status: ExitStatus | None
    output: str = ""
    timed_out: bool = False
    error: str = ""


class ProbeTarget(Protocol):
    """What a probe may see and use of the item it checks (``self.target``)."""

    @property
    def group(self) -> str:
        """``"app"`` or ``"service"``."""

    @property
    def id(self) -> str: ...

    @property
    def config(self) -> AppConfig | ServiceConfig:
        """The item's configuration."""

    @property
    def pid(self) -> int:
        """The pid of the app's current run (0 for services, or when unknown)."""

    @property
    def timeout(self) -> float:
        """Seconds one :meth:`Probe.check` may take (the probe's ``timeout``)."""

    @property
    def log(self) -> Any:
        """A structlog logger bound to the item."""

    def now(self) -> float:
        """The supervisor's monotonic clock (seconds)."""

    async def run(self, argv: Sequence[str], timeout: float) -> CommandOutcome:
        """Run a program as the app runs (its environment, user and working directory).

        Apps only. It runs in a session of its own, its exit is collected by Patrol's
        one reaper, and its whole process group is killed at ``timeout`` (or when the
        check is cancelled): nothing of it outlives the check.
        """

    def watch_output(self, callback: Callable[[str, str], None]) -> Cancellable | None:
        """Call ``callback(stream, line)`` for each line the app's current run writes.

        ``stream`` is ``stdout``, ``stderr`` or ``stdmerge`` (``std-merge``); ``line``
        is text without its newline (invalid UTF-8 replaced; a line longer than 8 KiB
        arrives in pieces). Lines arrive as Patrol reads them from the app's pipes, on
        the loop. None when the run's output is not read by Patrol (an app adopted from
        an older Patrol, or a service). Ends by itself when the run ends.
        """

    def check_now(self) -> None:
        """Ask Patrol to call :meth:`Probe.check` at once (an event-driven probe saw
        something), instead of at the next period."""


class Probe(ABC):
    """Base class of probes. Override :meth:`check`, and what else you need.

    Class attributes:

    ``name``
        What users write as the probe's key in ``readiness`` / ``liveness``.
    ``aliases``
        Other accepted names.
    ``options``
        The keys of the probe's settings object (:class:`patrol.Option`): the config
        loader checks their types and fills defaults into ``self.settings``.
    ``shorthand``
        The option a plain value stands for: with ``shorthand = "port"``,
        ``{"tcp": 8080}`` means ``{"tcp": {"port": 8080}}``. None: settings must be an
        object.
    ``apps_only``
        The probe needs an app's process or output (services cannot use it).
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[int | str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()
    shorthand: ClassVar[str | None] = None
    apps_only: ClassVar[bool] = False

    def __init__(self, target: ProbeTarget, settings: Mapping[str, Any]) -> None:
        self.target = target
        self.settings = settings

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Extra checks on the loaded settings: ``[(option key or "", message), ...]``."""
        return []

    def start(self) -> None:
        """The run's probing begins (before the initial delay): subscribe to events here."""

    @abstractmethod
    async def check(self) -> ProbeResult:
        """Look once. Raising counts as a failure (the message names your plugin)."""

    def stop(self) -> None:
        """The run ended: release what :meth:`start` took."""
