"""Stopping an app: the stop signal, a bounded wait, SIGKILL, and what was left behind.

A stop signals the run's pid if it is proven the app's (else the process groups Patrol
made for it), waits up to ``stop-timeout``, then kills every group Patrol may address.
Processes left in the run's groups after it ended, and processes of the app that left
its session and were re-parented to Patrol (found by their ``PATROL_ID`` marker), are
stopped too, in the background, so the next run never waits for them. Only processes
:mod:`patrol.engine.ownership` proves the app's are ever signalled, and only while they
are still the very process recorded (pid and start time).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Callable, Mapping, Protocol

import structlog

from patrol.engine import ownership, procfs
from patrol.engine.app_instance import NO_GROUPS, Instance
from patrol.engine.app_owner import AppOwner
from patrol.engine.signalling import group_alive, live_groups, pid_alive, signal_group, signal_pid

log = structlog.get_logger("patrol.supervisor")

#: how long after a run ended (at least; at most twice that, as before this was shared)
#: its escaped processes are looked for (see _stop_leftovers)
ESCAPED_LOOK_AFTER = 0.125
#: a stop's first look again after this many seconds, each next one twice as late, up to
#: POLL_LONGEST (for what gives no signal: an exit of the run's processes wakes it at once)
POLL_FIRST = 0.002
POLL_LONGEST = 0.05


class AppOwnerWithStrays(Protocol):
    """An app's runner, as the sweep of re-parented processes sees it."""

    def strays(self, found: dict[int, int]) -> None: ...


#: no process is being stopped (shared by every app until one has some)
NOTHING: frozenset[int] = frozenset()


class Stopper:
    """Stops one app's processes (see the module docstring)."""

    #: one per app (thousands at once): no per-object __dict__
    __slots__ = ("runner", "instance", "stopping", "leftovers")

    def __init__(self, runner: AppOwner, instance: Instance) -> None:
        self.runner = runner
        self.instance = instance
        # made at the first use (an empty set is ~200 B, and most apps never need these)
        self.stopping: set[int] | frozenset[int] = NOTHING  # escaped processes being stopped now
        self.leftovers: set[asyncio.Task[None]] | None = None  # stopping what a run left behind

    # -- the run itself --------------------------------------------------------------

    async def terminate(self, sig: int) -> None:
        """Signal, wait up to stop-timeout, then SIGKILL every group Patrol made for it."""
        runner = self.runner
        deadline = runner.now() + runner.config.stop_timeout
        pid = runner.state.pid or self.instance.launcher_pid
        ours = bool(pid) and runner.owns(pid)  # a pid only a ping named is neither signalled nor waited on
        if ours:
            signal_pid(pid, sig)
        else:
            self.signal_groups(sig)  # all Patrol may address: the groups it made
        # No reaping before the first look: the exits come with SIGCHLD, whose handler
        # reaps them. At a shutdown every app's stop signals in the same turn of the loop;
        # reaping (and closing the runs of) the exits so far after each signal made the
        # last app's signal wait for hundreds of closes, and its exit with it, where the
        # children can end on another core while the loop closes the runs.
        if await self.wait(lambda: not (ours and self._alive(pid)), deadline, look=False):
            self.signal_groups(signal.SIGTERM)  # leftovers of a clean exit get a polite signal first
            if await self.wait(lambda: not self.groups_alive(reap=True), deadline):
                await self.stop_escaped(deadline)
                return self._ended(pid, ours)
        runner.log.warning("did not stop in time, killing", timeout=runner.config.stop_timeout)
        self.kill_all(signal.SIGKILL)
        await self.wait(lambda: not self.groups_alive(reap=True) and not (ours and self._alive(pid)), runner.now() + 5)
        await self.stop_escaped(runner.now())
        self._ended(pid, ours)

    def _ended(self, pid: int, ours: bool) -> None:
        """After a stop: close a run whose processes are gone, even if the keepalive never
        said so (it failed, or the exit status went elsewhere), so a stop never leaves a
        dead pid shown running (and a stop retried forever)."""
        runner, state, launching = self.runner, self.runner.state, self.instance.launching
        reason = runner.stop_reason or "stopped"
        if state.running and state.pid == pid and (ours or runner.plugin_error) and not pid_alive(pid):
            runner.control.dead(reason)
        elif runner.plugin_error and (state.running or launching):
            runner.control.dead(reason)
        elif launching and not state.running and pid == self.instance.launcher_pid and not pid_alive(pid) \
                and not self.groups_alive():
            runner.control.dead(reason)

    def execute_timeout(self) -> None:
        """``execute-timeout`` passed: the run is killed (its restart follows the policy)."""
        runner = self.runner
        runner.log.warning("execute-timeout reached, killing", seconds=runner.config.execute_timeout)
        runner.stop_reason = "execute-timeout"
        self.kill_all(signal.SIGKILL)

    def kill_all(self, sig: int) -> None:
        pid = self.runner.state.pid or self.instance.launcher_pid
        self.signal_groups(sig)
        if pid and self.runner.owns(pid):
            signal_pid(pid, sig)

    def signal_groups(self, sig: int) -> None:
        """Signal the run's groups that are still the ones recorded."""
        groups = self.instance.groups
        gone = []
        for pgid, leader in list(groups.items()):
            if not ownership.has_members(pgid):
                continue  # empty, as after the run's exit: nothing to send, nothing to read
            if ownership.group_is_still(pgid, leader):
                signal_group(pgid, sig)
            else:  # emptied, and its number reused by someone else's group
                gone.append(pgid)
        if gone:  # (the groups are replaced whole: see Instance.groups)
            self.instance.groups = {g: s for g, s in groups.items() if g not in gone}

    async def wait(self, done: Callable[[], bool], deadline: float, *, look: bool = True) -> bool:
        """Wait for ``done()`` until ``deadline``: a bounded wait used only while stopping.

        Each exit of one of the run's processes wakes it at once (:meth:`Instance.on_exit`);
        between exits it looks again after 2, 4, 8 ... 50 ms (:data:`POLL_FIRST`), for
        what gives no signal (a process that is not Patrol's child, a group's other
        members). Timers alone made a shutdown of 500 apps look ~12 times per app, each
        look reading ``/proc``, and the last look of each came up to 50 ms after its exit.
        ``look``: False skips reaping before the first check (see :meth:`terminate`).
        """
        runner, instance = self.runner, self.instance
        loop = runner.sup.loop
        delay = POLL_FIRST
        while True:
            if look:
                runner.sup.reaper.reap_if_signalled()  # zombies make the group checks read /proc
            look = True
            if done():
                return True
            if runner.now() >= deadline:
                return False
            woken: asyncio.Future[None] = loop.create_future()
            timer = loop.call_later(min(delay, max(0.0, deadline - runner.now())), _wake, woken)
            if instance.exit_waiters is None:
                instance.exit_waiters = set()
            instance.exit_waiters.add(woken)
            try:
                await woken
            finally:
                timer.cancel()
                instance.exit_waiters.discard(woken)
                if not instance.exit_waiters:
                    instance.exit_waiters = None
            delay = min(delay * 2, POLL_LONGEST)

    def _alive(self, pid: int) -> bool:
        """:func:`pid_alive`, without a look at ``/proc`` for a child of Patrol watched for
        this app: it is alive until reaped (and its exit wakes :meth:`wait`)."""
        return self.runner.sup.reaper.watcher(pid) == self.runner.key or pid_alive(pid)

    def stoppable(self) -> bool:
        """Is there anything Patrol may signal to stop the run?"""
        pid = self.runner.state.pid or self.instance.launcher_pid
        return bool(pid and self.runner.owns(pid)) or self.groups_alive()

    def groups_alive(self, *, reap: bool = False) -> bool:
        """Has a group Patrol made for the run a live member? ``reap``: a zombie leader may
        be reaped to tell (inside :meth:`wait` only, where reaping is expected; elsewhere
        an exit handled in the middle of the caller would change the run under it)."""
        groups = self.instance.groups
        return bool(live_groups((g for g, leader in groups.items()
                                 if ownership.has_members(g) and ownership.group_is_still(g, leader)),
                                reap=self.runner.sup.reaper.reap if reap else None))

    async def drain(self) -> None:
        """Wait for the stops of leftovers running in the background."""
        if self.leftovers:
            await asyncio.gather(*self.leftovers, return_exceptions=True)

    # -- what a run left behind ------------------------------------------------------

    def cleanup_groups(self) -> None:
        """After a run ended, processes left in its groups get stopped too, and so do
        processes of the app that left its session (re-parented to Patrol).

        In the background: the next run has groups of its own and need not wait.
        """
        if self.runner.stop_task is not None:
            return  # the stop in progress takes care of them
        owners, old = self.runner.sup.owners, self.instance.groups
        groups = {g: s for g, s in old.items() if ownership.group_is_still(g, s) and group_alive(g)}
        for g in old.keys() - groups.keys():
            owners.forget_session(g)
        self.instance.groups = NO_GROUPS
        if groups:
            self.runner.log.info("stopping leftover processes", groups=sorted(groups))
        # what left the session is looked for in the background too: started before now,
        # so the next run's processes are never taken for leftovers
        self._in_background(groups, {}, escaped_before=procfs.now_ticks())

    def strays(self, found: dict[int, int]) -> None:
        """The tick found these processes (pid -> start time) re-parented to Patrol and
        proven this app's.

        Each is stopped if it cannot be part of the app as it runs now: no run is live
        (or starting), or it is older than the last launch (left over from an earlier
        run). A younger one may be the run's own daemon: left alone.
        """
        runner, instance = self.runner, self.instance
        busy = runner.state.running or instance.launching or runner.stop_task is not None
        launched = instance.launch_start
        stop = {pid: start for pid, start in found.items()
                if pid not in (runner.state.pid, instance.launcher_pid) and pid not in self.stopping
                and not (busy and (launched is None or start >= launched))}
        if stop:
            runner.log.info("stopping processes of the app that left its session", pids=sorted(stop))
            self._in_background({}, stop)

    async def _escaped(self, before: int | None = None) -> dict[int, int]:
        """This app's processes re-parented to Patrol (pid -> start time), except the
        run's pid, the launcher and those being stopped already."""
        runner = self.runner
        found = await runner.sup.owners.children_of(runner.key, before)
        return {p: s for p, s in found.items()  # as things are now, after the look
                if p not in (runner.state.pid, self.instance.launcher_pid) and p not in self.stopping
                and same_process(p, s)}

    async def stop_escaped(self, deadline: float, before: int | None = None) -> None:
        """Stop this app's processes re-parented to Patrol, round after round (stopping
        one may re-parent its children), until none is left."""
        for _ in range(8):
            found = await self._escaped(before)
            if not found:
                return
            self.runner.log.info("stopping processes of the app that left its session", pids=sorted(found))
            await self._stop_processes({}, found, deadline)

    def _in_background(self, groups: dict[int, int | None], procs: dict[int, int],
                       escaped_before: int | None = None) -> None:
        self._mark_stopping(procs)  # now: the next sweep must not start a second stop
        task = self.runner.sup.loop.create_task(self._stop_leftovers(groups, procs, escaped_before))
        if self.leftovers is None:
            self.leftovers = set()
        self.leftovers.add(task)
        task.add_done_callback(self.leftovers.discard)

    async def _stop_leftovers(self, groups: dict[int, int | None], procs: dict[int, int],
                              escaped_before: int | None) -> None:
        deadline = self.runner.now() + self.runner.config.stop_timeout
        if groups or procs:
            await self._stop_processes(groups, procs, deadline)
        if escaped_before is not None:
            # The look reads every child of Patrol (~2 ms per 1,000 in the kernel alone):
            # after a short wait, at a moment shared with the other runs that ended
            # meanwhile, so they share one look (and the respawn goes first): at most
            # one such look per ESCAPED_LOOK_AFTER whatever the rate of exits.
            # ``escaped_before`` keeps the next run's processes out.
            await self.runner.sup.owners.census.settle(ESCAPED_LOOK_AFTER)
            await self.stop_escaped(max(deadline, self.runner.now() + 1.0), escaped_before)
        for g in groups:
            self.runner.sup.owners.forget_session(g)

    async def _stop_processes(self, groups: dict[int, int | None], procs: dict[int, int], deadline: float) -> None:
        """SIGTERM, up to ``deadline``, then SIGKILL: groups that are still the recorded
        ones, and processes that are still the recorded ones (pid and start time). A
        process that leads its own group takes its group with it."""
        self._mark_stopping(procs)
        alive, busy = dict(procs), dict(groups)  # what may still be there

        async def signal_all(sig: int) -> None:  # in slices: there may be hundreds
            for n, (pgid, leader) in enumerate(list(busy.items()), 1):
                if ownership.group_is_still(pgid, leader):
                    signal_group(pgid, sig)
                if n % 32 == 0:
                    await asyncio.sleep(0)
            for n, (pid, start) in enumerate(list(alive.items()), 1):
                info = procfs.stat(pid)
                if info is not None and info.alive and info.start == start:
                    if info.pgid == pid and pid not in busy:
                        busy[pid] = start  # it leads a group: its group goes with it
                        signal_group(pid, sig)
                    signal_pid(pid, sig)
                if n % 32 == 0:
                    await asyncio.sleep(0)

        def gone() -> bool:  # forgets what is gone: each look costs only what is left
            for pid, start in list(alive.items()):
                if not same_process(pid, start):
                    del alive[pid]
            if alive:
                return False
            live = live_groups(g for g, s in busy.items() if ownership.group_is_still(g, s))
            for pgid in list(busy):
                if pgid not in live:
                    del busy[pgid]
            return not busy

        try:
            await signal_all(signal.SIGTERM)
            if not await self.wait(gone, deadline):
                await signal_all(signal.SIGKILL)
                await self.wait(gone, self.runner.now() + 5)
        finally:
            if isinstance(self.stopping, set):
                self.stopping.difference_update(procs)

    def _mark_stopping(self, procs: Mapping[int, int]) -> None:
        if not isinstance(self.stopping, set):
            self.stopping = set()
        self.stopping.update(procs)


def same_process(pid: int, start: int) -> bool:
    """Is ``pid`` still alive and still the process that started at ``start``?"""
    info = procfs.stat(pid)
    return info is not None and info.alive and info.start == start


def sweep_strays(owners: ownership.Ownership, apps: Mapping[str, AppOwnerWithStrays]) -> None:
    """Hand each process re-parented to Patrol to the app it is proven to belong to.

    Apps whose processes leave their session (``setsid`` and exit) would otherwise
    pile them up under Patrol, the child subreaper. Only Patrol's direct children
    are looked at (``/proc/self/task/*/children``), not all of ``/proc``.
    """
    try:
        found: dict[str, dict[int, int]] = {}
        for pid, start, owner in owners.attributed(procfs.children(), budget=ownership.SWEEP_BUDGET):
            group, _, item_id = owner.partition("/")
            if group == "app" and item_id in apps:
                found.setdefault(item_id, {})[pid] = start
        for item_id, pids in found.items():
            apps[item_id].strays(pids)
    except Exception:  # noqa: BLE001 - a sweep must never stop the tick
        log.exception("sweep of re-parented processes failed")


def _wake(woken: "asyncio.Future[None]") -> None:
    if not woken.done():
        woken.set_result(None)
