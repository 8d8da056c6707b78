"""Ping-based liveness (the ``http`` and ``udp`` keepalives share it).

An app proves it is alive by pinging before ``ping-timeout`` runs out. Expiry is one
timer per app, re-armed by each ping (no polling loop). Spec section 7.4 decides what a
ping with a pid does: adopt a not-running app, refresh the running one, or close the
old instance and start a new one when the pid changed. Fixes of the original: a pid-less
ping of a not-running app leaves no stale ``lastseen`` (10.6); the exit of a launcher
whose app reported another pid does not close the instance (10.4).
"""

from __future__ import annotations

from .keepalive import Cancellable, KeepAlive


class PingKeepAlive(KeepAlive):
    """Base class: subclasses set ``name``, ``aliases`` and ``ping_transport``."""

    _timer: Cancellable | None = None

    def timeout(self) -> float:
        return float(self.app.patrol_config.ping_timeout)

    def startup_grace(self) -> float:
        """Apps already running when Patrol starts get two timeouts to ping (spec 6)."""
        return 2 * self.timeout()

    def spawned(self, pid: int) -> None:
        # Running at once, under the launcher's pid until a ping says otherwise.
        self.app.alive(pid, tentative=True)
        self._arm()

    def pinged(self, pid: int) -> None:
        if pid or self.app.running:
            self.app.alive(pid, pinged=True)
            self._arm()

    def closed(self) -> None:
        self._timer = None

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.app.call_later(self.timeout(), self._expired)

    def _expired(self) -> None:
        self._timer = None
        self.app.dead("ping expired")
