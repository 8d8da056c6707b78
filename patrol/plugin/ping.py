"""Ping-based liveness (the ``http`` and ``udp`` keepalives share it).

An app proves it is alive by pinging before ``ping-timeout`` runs out. Expiry is one
timer per app, not a polling loop; a ping only moves a deadline, and the timer, when it
fires early, re-arms itself for the rest (a busy app pinging many times a second costs
no timer churn). A ping with a pid, as the original had it, adopts a not-running app,
refreshes the running one, or closes the old instance and starts a new one when the
pid changed.

Fixes of the original:

* a pid-less ping of a not-running app changes nothing: no stale ``lastseen`` that
  closes the next instance early; such an app must send its pid to be adopted;
* the exit of a launcher whose app reported another pid does not close the instance,
  and a launcher that exits 0 before any ping is taken for a daemon that forked: its
  instance lives on until a ping replaces the pid or the timeout expires;
* a pid from a ping is proof of nothing. Patrol acts on it (stop signals, exit
  watching) only when the kernel proves it is this app's (Patrol started
  it or one of its ancestors for this app, or its environment carries ``PATROL_ID``);
  otherwise it is only recorded and only the timeout ends the instance.
"""

from __future__ import annotations

from patrol.plugin.keepalive import AppControl, Cancellable, ExitStatus, KeepAlive


class PingKeepAlive(KeepAlive):
    """Base class: subclasses set ``name``, ``aliases`` and ``ping_transport``."""

    def __init__(self, app: AppControl) -> None:
        super().__init__(app)
        self._deadline = 0.0  # monotonic: the instance ends unless a ping comes before
        self._timer: Cancellable | None = None
        self._timer_at = 0.0  # when the timer fires
        self._confirmed = 0  # the pid the last ping named

    def timeout(self) -> float:
        return float(self.app.patrol_config.ping_timeout)

    def startup_grace(self) -> float:
        """Apps already running when Patrol starts get two timeouts to ping (as the original)."""
        return 2 * self.timeout()

    def adopt(self) -> None:
        """An instance restored from the state file has the startup grace to ping again.

        Its pid is the same process as before Patrol stopped (pid and start time), but
        that says nothing about whom it belongs to: it is watched only if it was started
        for this app, like a pinged pid.
        """
        if not self.app.running:
            return
        pid = self.app.pid
        if pid and self.app.owns(pid):
            self._confirmed = pid
            if self.app.watch_pid(pid, lambda: self._gone(pid)) is None:
                self.app.dead("exited")
                return
        self._refresh(self.startup_grace())

    def spawned(self, pid: int) -> None:
        # Running at once, under the launcher's pid until a ping says otherwise.
        self.app.alive(pid, tentative=True)
        self._refresh()

    def pinged(self, pid: int) -> None:
        if not pid:
            if self.app.running:
                self.app.alive(0, pinged=True)
                self._refresh()
            return
        new = pid != self.app.pid or not self.app.running
        self.app.alive(pid, pinged=True)
        self._confirmed = pid
        if new and pid != self.app.launcher_pid and self.app.pid == pid and self.app.owns(pid):
            # Maybe not Patrol's child, so no exit status may arrive: watch it (pidfd) too.
            self.app.watch_pid(pid, lambda: self._gone(pid))
        self._refresh()

    def child_exited(self, pid: int, status: ExitStatus) -> None:
        if not (self.app.running and pid == self.app.pid):
            return  # an old launcher or a wrapper, not the app: the instance goes on
        if pid != self._confirmed and status.code == 0:
            self.app.log.info("launcher exited 0 before any ping; waiting for the app to ping", pid=pid)
            return
        self.app.dead("exited", status)

    def closed(self) -> None:
        self._timer = None  # the runner cancels the instance's timers
        self._confirmed = 0

    def _gone(self, pid: int) -> None:
        if self.app.running and self.app.pid == pid:
            self.app.dead("exited")

    def _refresh(self, within: float | None = None) -> None:
        """The instance ends unless the next ping comes ``within`` seconds (ping-timeout)."""
        within = self.timeout() if within is None else within
        self._deadline = self.app.now() + within
        if self._timer is not None and self._timer_at <= self._deadline:
            return  # it fires first, and re-arms itself for the rest
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.app.call_later(within, self._due)
        self._timer_at = self._deadline

    def _due(self) -> None:
        fired, self._timer = self._timer, None
        if fired is not None:
            fired.cancel()  # marks it done, so the runner can forget it
        left = self._deadline - self.app.now()
        if left > 0.001:
            self._timer = self.app.call_later(left, self._due)
            self._timer_at = self._deadline
        else:
            self.app.dead("ping expired")

