"""Running one probe for one run of an item: when to look, how long a look may take, and
what a streak of answers means (Kubernetes' semantics, thresholds counted with ``>=``).

A :class:`ProbeLoop` waits ``initial-delay``, then asks the probe every ``period``
seconds; each answer gets at most ``timeout`` seconds (a probe still busy is cancelled:
an ``exec`` probe's process group is killed) and counts as a failure if it does not
come, raises, or is not a :class:`~patrol.plugin.probe.ProbeResult`. ``success-threshold``
successes in a row make the probe pass, ``failure-threshold`` failures in a row make it
fail; each change is reported once per streak. A probe that saw something may ask to be
checked at once (:meth:`ProbeLoop.check_now`), so an event-driven probe (a log line)
needs no polling to be quick. Everything runs on the loop; nothing here blocks it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from patrol.plugin.model import ProbeSpec
from patrol.plugin.probe import Probe, ProbeResult, ProbeTarget

#: the longest message of a probe that is kept (API, GUI, events)
MAX_MESSAGE = 300


class ProbeLoop:
    """One probe of one run (see the module docstring).

    ``changed(loop, flipped)`` is called after every answer; ``flipped`` is True when
    the answer changed :attr:`passing`.
    """

    def __init__(self, kind: str, spec: ProbeSpec, cls: type[Probe], target: ProbeTarget, plugin: str,
                 changed: Callable[["ProbeLoop", bool], None], log: Any) -> None:
        self.kind = kind  # readiness or liveness
        self.spec = spec
        self.plugin = plugin
        self.changed = changed
        self.log = log
        #: True once success-threshold successes came in a row, False after failure-threshold
        #: failures in a row; None before either
        self.passing: bool | None = None
        self.last: ProbeResult | None = None
        self.last_at: float | None = None  # wall clock of the last answer (set by the owner)
        self.successes = 0
        self.failures = 0
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failed_once = False
        self.probe: Probe | None = None
        try:
            self.probe = cls(target, spec.settings)
            self.probe.start()
        except Exception as exc:  # noqa: BLE001 - a probe's bug fails its checks, not Patrol
            self.probe = None
            self._broken = self._plugin_error("start", exc)
        else:
            self._broken = ""

    def begin(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def end(self) -> None:
        """The run ended: no more looks; the probe releases what it took."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.probe is not None:
            try:
                self.probe.stop()
            except Exception as exc:  # noqa: BLE001
                self._plugin_error("stop", exc)
            self.probe = None

    def check_now(self) -> None:
        self._poke.set()

    # -- the loop --------------------------------------------------------------------

    async def _run(self) -> None:
        await self._wait(self.spec.initial_delay)
        while True:
            self.record(await self.attempt())
            await self._wait(self.spec.period)

    async def _wait(self, delay: float) -> None:
        """Until ``delay`` has passed or someone asked for a look at once."""
        if not self._poke.is_set():
            try:
                await asyncio.wait_for(self._poke.wait(), delay)
            except asyncio.TimeoutError:
                pass
        self._poke.clear()

    async def attempt(self) -> ProbeResult:
        """One look, bounded by the timeout; whatever goes wrong is a failed look."""
        if self.probe is None:
            return ProbeResult(False, self._broken)
        try:
            result = await asyncio.wait_for(self.probe.check(), self.spec.timeout)
        except asyncio.TimeoutError:
            return ProbeResult(False, f"timed out after {self.spec.timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - a probe's bug fails this look only
            return ProbeResult(False, self._plugin_error("check", exc))
        if not isinstance(result, ProbeResult):
            return ProbeResult(False, f"probe {self.spec.probe!r} (plugin {self.plugin}) returned "
                               f"{type(result).__name__}, not a ProbeResult")
        return result

    def record(self, result: ProbeResult) -> None:
        """Count an answer; report it, and whether it changed :attr:`passing`."""
        message = result.message if len(result.message) <= MAX_MESSAGE else result.message[:MAX_MESSAGE] + "..."
        self.last = ProbeResult(result.ok, message)
        if result.ok:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1
        before = self.passing
        if before is not True and self.successes >= self.spec.success_threshold:
            self.passing = True
        elif before is not False and self.failures >= self.spec.failure_threshold:
            self.passing = False
        self.changed(self, self.passing != before)

    def _plugin_error(self, where: str, exc: Exception) -> str:
        message = (f"probe {self.spec.probe!r} (plugin {self.plugin}) failed in {where}(): "
                   f"{type(exc).__name__}: {exc}")
        if not self._failed_once:  # once per run: a probe failing every period must not flood the log
            self._failed_once = True
            self.log.error("probe plugin failed", kind=self.kind, probe=self.spec.probe, plugin=self.plugin,
                           where=where, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        return message
