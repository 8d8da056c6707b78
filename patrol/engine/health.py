"""An item's readiness and liveness during one run: its probes, its keepalive's word,
and what they mean for its state.

A part the runner owns (like the stop of an app): :meth:`Health.begin` when a run
begins, :meth:`Health.end` when it ends. Readiness has up to two sources, a
``readiness`` probe and a keepalive that reports readiness itself (``notify``); the run
is ready while every source it has says so. An item with neither is ready whenever it
runs (state ``running``, as before readiness existed). With a source, a run is
``running`` until it is first ready, then ``ready``, and ``unready`` when a source
takes it back (never restarted for that). Liveness failing ``failure-threshold`` times
in a row fails the run: the runner stops it the normal way and restarts it as after a
crash, with the probe's message as the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

from patrol.engine.output_lines import OutputLines
from patrol.plugin.states import ItemState

if TYPE_CHECKING:  # the probe machinery is imported by the first run with a probe (Health.begin)
    from patrol.engine.probe_target import TargetOwner
    from patrol.engine.probing import ProbeLoop

    class HealthOwner(TargetOwner, Protocol):
        """The runner of an app or a service, as its health sees it: the probes' target,
        which also emits events."""

        def emit(self, name: str, **extra: Any) -> None: ...


#: the probe loops of an item without a run or without probes (one empty mapping for all)
NO_LOOPS: Mapping[str, "ProbeLoop"] = MappingProxyType({})
NO_ANSWERS: Mapping[str, "ProbeStatus"] = MappingProxyType({})


@dataclass(frozen=True)
class ProbeStatus:
    """The last answer of a probe, as readers show it."""

    ok: bool
    message: str
    at: float | None  # wall clock
    passing: bool | None  # the streak's verdict (None: not decided yet)


class RunSource(Protocol):
    """What an app's probes run with: its run's environment and output lines."""

    def probe_environment(self) -> Mapping[str, str]: ...

    def output_lines(self) -> OutputLines | None: ...


class Health:
    """Readiness and liveness of one item's current run (see the module docstring).

    ``fail(owner, reason)`` ends the run as a failure (apps: liveness): a function
    every item shares (``AppRunner.fail_run``), called with the owner, not a bound
    method kept per item (~64 bytes each); ``notified``: the
    item's keepalive reports readiness itself; ``run``: where the probes of an app get
    its run's environment and output (:class:`~patrol.engine.probe_target.RunTarget`),
    asked only when a run has probes (no bound methods kept per app).
    """

    #: one per app (thousands at once): no per-object __dict__
    __slots__ = ("owner", "fail", "run", "reports_readiness", "loops", "live", "notified",
                 "notified_message", "status_text", "was_ready", "ready")

    def __init__(self, owner: HealthOwner, *, fail: Callable[[Any, str], None] | None = None,
                 notified: bool = False, run: RunSource | None = None) -> None:
        self.owner = owner
        self.fail = fail
        self.run = run
        self.reports_readiness = notified
        self.loops: Mapping[str, ProbeLoop] = NO_LOOPS  # kind -> loop, during a run with probes
        self.live = False  # a run is on
        self.notified: bool | None = None  # the keepalive's word (reports_readiness only)
        self.notified_message = ""
        self.status_text: str | None = None  # the app's own status line (STATUS=)
        self.was_ready = False  # this run was ready once
        self.ready = False

    @property
    def has_source(self) -> bool:
        return self.owner.config.readiness is not None or self.reports_readiness

    # -- the run ---------------------------------------------------------------------

    def begin(self) -> None:
        """A run began (spawned, found running, or adopted): its probes start."""
        self.end()
        self.live = True
        owner, plugins = self.owner, self.owner.sup.plugins
        specs = (("readiness", owner.config.readiness), ("liveness", getattr(owner.config, "liveness", None)))
        loops: dict[str, ProbeLoop] = {}
        for kind, spec in specs:
            if spec is None:
                continue
            # here, not at the top: a Patrol whose items have no probes never loads the
            # probe loop and its targets (~35 KB of RSS for every daemon otherwise)
            from patrol.engine.probe_target import RunTarget
            from patrol.engine.probing import ProbeLoop

            run = self.run
            target = RunTarget(owner, spec.timeout, run.probe_environment if run is not None else None,
                               run.output_lines if run is not None else None)
            cls = plugins.probes.get(spec.probe)
            loop = ProbeLoop(kind, spec, cls, target, plugins.origin(plugins.probes, spec.probe), self._probed,
                             owner.log)
            target.poke = loop.check_now
            loops[kind] = loop
            self.loops = loops  # before the loop begins: a probe may answer at once
            loop.begin()
        self._update("")

    def end(self) -> None:
        """The run ended: its probes stop; what they said is forgotten with it."""
        for loop in self.loops.values():
            loop.end()
        self.loops = NO_LOOPS
        self.live = self.was_ready = False
        self.notified, self.notified_message, self.status_text = None, "", None
        self._update("")

    # -- what the sources say --------------------------------------------------------

    def keepalive_ready(self, ready: bool, message: str) -> None:
        """The keepalive's word on readiness (notify's READY=1, RELOADING=1, ...)."""
        if not self.live:
            return
        self.notified, self.notified_message = ready, message
        self._update(message)

    def set_status(self, text: str | None) -> None:
        self.status_text = text if self.live else None

    def _probed(self, loop: ProbeLoop, flipped: bool) -> None:
        loop.last_at = self.owner.sup.wall()
        message = loop.last.message if loop.last is not None else ""
        if loop.kind == "liveness":
            if flipped and loop.passing is False and self.fail is not None:
                self.owner.log.warning("liveness failed", failures=loop.failures, message=message)
                self.owner.emit(f"{self.owner.group}.liveness_failed", error=message)
                self.fail(self.owner, f"liveness: {message}" if message else "liveness failed")
            return
        if flipped:
            self._update(message)

    def _update(self, message: str) -> None:
        ready = self.live
        readiness = self.loops.get("readiness")
        if ready and readiness is not None and readiness.passing is not True:
            ready = False
        if ready and self.reports_readiness and self.notified is not True:
            ready = False
        if ready == self.ready:
            return
        self.ready = ready
        owner = self.owner
        if self.has_source and ready:
            self.was_ready = True
            owner.log.info("ready")
            owner.emit(f"{owner.group}.ready")
        elif self.has_source and self.live:
            owner.log.warning("unready", reason=message)
            owner.emit(f"{owner.group}.unready", reason=message or "not ready")
        owner.sup.dependencies.changed(owner)

    # -- reporting -------------------------------------------------------------------

    def phase(self) -> ItemState:
        """The state of a running item: ``ready``/``unready`` once it has a readiness source."""
        if self.owner.config.readiness is None and not self.reports_readiness:  # has_source, inline
            return ItemState.RUNNING
        if self.ready:
            return ItemState.READY
        return ItemState.UNREADY if self.was_ready else ItemState.RUNNING

    def probes(self) -> Mapping[str, ProbeStatus]:
        """kind -> the last answer (probes that answered at least once in this run)."""
        if not self.loops:  # most items have no probe: every /status/ asks each one
            return NO_ANSWERS
        return {kind: ProbeStatus(loop.last.ok, loop.last.message, loop.last_at, loop.passing)
                for kind, loop in self.loops.items() if loop.last is not None}

    def note(self) -> str:
        """Why a running item is not ready, in a few words (GUI, CLI)."""
        if not self.live or self.ready or not self.has_source:
            return ""
        parts: Sequence[str] = [f"{kind}: {status.message}" for kind, status in self.probes().items()
                                if kind == "readiness" and not status.ok and status.message]
        if self.reports_readiness and self.notified is not True:
            parts = [*parts, self.notified_message or "its keepalive has not reported it ready yet"]
        return "; ".join(parts) or "readiness not confirmed yet"
