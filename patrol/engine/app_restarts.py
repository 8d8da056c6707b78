"""What happens after a run of an app ended: start it again at once, after a backoff,
give up, or leave it ended because its restart policy says so.

The app's runner (:mod:`patrol.engine.app_runner`) owns one :class:`Restarts` and asks
it after every death. A run that Patrol itself ended on request (a restart toggle)
starts again at once; any other end counts against the backoff ladder and the start
limit (``backoff-*``, ``start-limit``); an app whose ``restart`` policy does not want
this end restarted stays ``exited`` until it is toggled (enable, restart, run-once).
"""

from __future__ import annotations

import asyncio

from patrol.engine.app_owner import AppOwner
from patrol.plugin.keepalive import ExitStatus
from patrol.plugin.model import AppConfig, Backoff
from patrol.util.backoff import capped_exponential


class Restarts:
    """The restart decisions of one app, and what they left it in (see the module docstring)."""

    #: one per app (thousands at once): no per-object __dict__
    __slots__ = ("runner", "failures", "delay", "given_up", "exited", "retry")

    def __init__(self, runner: AppOwner) -> None:
        self.runner = runner
        self.failures = 0  # consecutive quick failures (backoff)
        self.delay = 0.0  # the current backoff's wait
        self.given_up = False  # the start limit was reached
        self.exited = False  # the restart policy left it ended
        self.retry: asyncio.TimerHandle | None = None

    @property
    def holding(self) -> bool:
        """Is a start held back (gave up, left exited, or backing off)?"""
        return self.given_up or self.exited or self.retry is not None

    def after_death(self, uptime: float, requested: bool) -> None:
        """A run that lasted ``uptime`` s ended; ``requested``: Patrol ended it to restart it."""
        runner = self.runner
        if requested:
            self.failures = 0
            self.delay = 0.0
            runner.sup.reaper.soon(runner.reconcile)  # ahead of what the exit queued
            return
        if not wanted(runner.config, runner.last_exit, runner.last_reason):
            self.exited = True
            runner.log.info("exited; not restarted", restart=runner.config.restart,
                            status=str(runner.last_exit) if runner.last_exit else None)
            runner.emit("app.exited")
            return
        self.failures, delay = next_delay(runner.config.backoff, self.failures, uptime)
        if delay is None:
            self.given_up = True
            error = f"gave up after {self.failures} quick failures in a row"
            runner.last_reason = error
            runner.log.error("gave up", failures=self.failures)
            runner.emit("app.gave_up", error=error)
            return
        self.delay = delay
        if delay == 0:
            runner.sup.reaper.soon(runner.reconcile)  # ahead of what the exit queued
        else:
            self.retry = runner.sup.loop.call_later(delay, self._retry_due)

    def _retry_due(self) -> None:
        self.retry = None
        self.runner.reconcile()

    def release(self) -> None:
        """A toggle asked for a start: forget the backoff, the start limit and the exit."""
        self.given_up = self.exited = False
        self.failures = 0
        self.cancel()

    def cancel(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None


def wanted(config: AppConfig, status: ExitStatus | None, reason: str) -> bool:
    """Does the app's ``restart`` policy start it again after this end?

    ``always``: yes. ``never``: no. ``on-failure``: unless the program exited by itself
    with one of ``success-exit-codes`` (an end Patrol could not see as an exit, such as
    an expired ping or a failed start, is a failure).
    """
    if config.restart == "always":
        return True
    if config.restart == "never":
        return False
    return not (status is not None and status.signal is None and status.code in config.success_exit_codes
                and reason in ("exited", ""))


def next_delay(backoff: Backoff, failures: int, uptime: float) -> tuple[int, float | None]:
    """After a run that lasted ``uptime`` s, with ``failures`` quick failures in a row
    before it: the new count, and the seconds before the next start (None: give up)."""
    if uptime >= backoff.reset:
        return 0, 0.0
    failures += 1
    if backoff.limit and failures >= backoff.limit:
        return failures, None
    if failures == 1:
        return failures, 0.0  # one crash is restarted at once; a crash *loop* backs off
    return failures, capped_exponential(backoff.base, backoff.factor, failures - 2, backoff.max)
