"""Patrol's children, each with its proven owner: one scan shared by everyone asking.

Stopping an app ends with a look for its processes that left their session and were
re-parented to Patrol (the child subreaper). That look reads every one of Patrol's
children, so at shutdown, with N apps stopping at once, asking once per app was N scans
of N children: 0.4 s of a 500-app shutdown, and quadratic (17 s at 3,000 apps).

A scan attributes every child (not only one app's), so the callers that ask while no
scan has started yet share the next one. A caller never gets a scan that began before it
asked: a process re-parented just before the question must be in the answer. Whoever
asks while a scan is under way waits for the one after it, which starts as soon as the
current one ends. A burst of N questions thus costs at most two scans.

Looks that need not be immediate (after a run ended, for what it left behind) meet at a
shared moment instead (:meth:`ChildCensus.settle`): one respawn after another would
otherwise start a scan each, back to back (at 5,000 children, scans of ~15 ms each ran
through the whole respawn benchmark, competing with the respawns themselves).
"""

from __future__ import annotations

import asyncio
from typing import Callable

from patrol.engine import procfs

#: children not recorded yet looked at between two turns of the loop (each costs /proc
#: reads, an environment maybe); a recorded one costs a dict lookup and counts nothing,
#: or a scan of 5,000 apps' launchers took 150 turns of the loop after every exit
SLICE = 32
#: recorded children looked at between two turns of the loop (a dict lookup each)
RECORDED_SLICE = 1024

Attribute = Callable[[int], "tuple[int, str] | None"]
#: one scan: every child with a proven owner, by owner (owner -> {pid: start time})
Scan = dict[str, dict[int, int]]


class ChildCensus:
    """Scans of Patrol's children (owner -> {pid: start time}), shared (see the module
    docstring). ``attribute`` proves one child's owner (None: unproven)."""

    def __init__(self, attribute: Attribute, recorded: Attribute = lambda pid: None) -> None:
        self.attribute = attribute
        self.recorded = recorded  # a recorded child's (start, owner) without any read; None: not recorded
        self.scans = 0  # scans so far (diagnostics and tests)
        self._next: asyncio.Future[Scan] | None = None  # not started yet
        self._runner: asyncio.Task[None] | None = None
        self._meeting = 0.0  # loop time of the next shared moment of :meth:`settle` (0: none)

    async def owned(self, owner: str) -> dict[int, int]:
        """``owner``'s live children (pid -> start time), from a scan that starts after
        this call. The apps of a shutdown all ask: each gets its own from the scan's
        index, where each filtering every child made N apps' questions cost N x N."""
        return dict((await self._answer()).get(owner, {}))

    async def _answer(self) -> Scan:
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
            self._next.add_done_callback(_retrieve)
        answer = self._next
        if self._runner is None:
            self._runner = loop.create_task(self._run())
        return await asyncio.shield(answer)

    async def settle(self, delay: float) -> None:
        """Wait at least ``delay`` seconds, until a moment shared with whoever else settles
        meanwhile: their looks then share one scan, so looks that can wait cost at most one
        scan per ``delay`` whatever the rate of exits. Waits between ``delay`` and twice it."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._meeting < now + delay:  # none pending, or too soon for this caller
            self._meeting = now + 2 * delay
        woken: asyncio.Future[None] = loop.create_future()
        handle = loop.call_at(self._meeting, _wake, woken)  # the same time: woken in one loop turn
        try:
            await woken
        finally:
            handle.cancel()

    async def _run(self) -> None:
        try:
            while self._next is not None:
                answer, self._next = self._next, None  # who asks from now on gets the next scan
                try:
                    found = await self._scan()
                except Exception as exc:  # noqa: BLE001 - handed to the callers
                    if not answer.done():
                        answer.set_exception(exc)
                else:
                    if not answer.done():
                        answer.set_result(found)
        finally:
            self._runner = None
            if self._next is not None and not self._next.done():  # cancelled with callers waiting
                self._next.cancel()
                self._next = None

    async def _scan(self) -> Scan:
        self.scans += 1
        owned: Scan = {}
        looked = 0
        # On the loop: the kernel writes the list in the read itself (~1.5 ms at 5,000
        # children, at most one scan per ESCAPED_LOOK_AFTER outside a stop), and in a
        # thread each of its reads waited for the GIL behind a busy loop: 50-80 ms per scan
        # in a shutdown of 500 apps (0.3 ms on the loop), where the stops wait for it.
        children = procfs.children()
        for n, pid in enumerate(children, 1):
            got = self.recorded(pid)
            if got is None:
                looked += 1
                if looked % SLICE == 0:
                    await asyncio.sleep(0)
                got = self.attribute(pid)
            elif n % RECORDED_SLICE == 0:
                await asyncio.sleep(0)
            if got is not None:
                owned.setdefault(got[1], {})[pid] = got[0]
        return owned


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


def _retrieve(answer: asyncio.Future[Scan]) -> None:
    """A scan that failed after its callers were cancelled must not be logged as unretrieved."""
    if not answer.cancelled():
        answer.exception()
