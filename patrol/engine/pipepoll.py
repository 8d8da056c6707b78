"""Every app's output pipe watched through one epoll set that the loop watches as one
descriptor.

Why not ``loop.add_reader`` per pipe: each registration keeps a handle, a copied
context, a selector key and its tuples (~300 bytes per pipe, two pipes per app) for
the whole life of a run, and most apps write nothing most of the time. Here a pipe
costs its entry in the kernel's epoll set and one dict entry. The set is
level-triggered, like the loop's own selector: a pipe that still holds data after the
reads it got in one wake-up (the reader bounds them, so one chatty app cannot starve
the others) keeps the set readable, and the loop calls back again on its next turn.

A pipe is taken out of the set before its descriptor is closed: the kernel keys an
epoll entry by the open file, which a child that has not yet exec'd may still share,
so a close alone could leave a stale entry that reports a reused descriptor number.
"""

from __future__ import annotations

import asyncio
import select
from typing import Callable, Generic, TypeVar

import structlog

log = structlog.get_logger("patrol.logs")

T = TypeVar("T")

#: the most ready pipes handled in one wake-up (the rest the next turn: the kernel
#: hands ready entries out round-robin, so none waits behind the others for long)
MAX_EVENTS = 256


class PipePoll(Generic[T]):
    """Descriptors, each with what the callback is told when it is readable or hung up.

    ``callback(item)`` runs on the loop for every ready descriptor; an exception in it
    is logged and the other ready descriptors are still served (as the loop does for
    its own callbacks).
    """

    __slots__ = ("_loop", "_callback", "_epoll", "_items")

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[T], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._epoll: select.epoll | None = None  # made with the first pipe
        self._items: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[T]:
        """What is watched now (a copy: callers may remove while they go through it)."""
        return list(self._items.values())

    def add(self, fd: int, item: T) -> None:
        """Watch ``fd`` (readable or hung up); raises ``OSError`` (then nothing changed)."""
        if self._epoll is None:
            epoll = select.epoll()  # close-on-exec: no child inherits the set
            try:
                self._loop.add_reader(epoll.fileno(), self._ready)
            except BaseException:
                epoll.close()
                raise
            self._epoll = epoll
        self._epoll.register(fd, select.EPOLLIN)
        self._items[fd] = item

    def remove(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed); nothing if it is not watched."""
        if self._items.pop(fd, None) is None or self._epoll is None:
            return
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # already closed by someone: the kernel dropped the entry with it

    def close(self) -> None:
        """Stop watching everything (the descriptors stay open: their owners close them)."""
        self._items.clear()
        if self._epoll is not None:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None

    def _ready(self) -> None:
        if self._epoll is None:
            return
        try:
            events = self._epoll.poll(0, MAX_EVENTS)
        except InterruptedError:
            return
        for fd, _ in events:
            item = self._items.get(fd)
            if item is None:  # removed by an earlier callback of this same wake-up
                continue
            try:
                self._callback(item)
            except Exception:  # noqa: BLE001 - one pipe's failure must not stop the others'
                log.exception("reading an output pipe failed", fd=fd)
