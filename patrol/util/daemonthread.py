"""Running a call that may hang for good off the loop, without it ever holding up exit.

``asyncio.to_thread`` runs calls in the loop's default executor, and ``asyncio.run``
joins that executor's threads when the loop ends, with no timeout: one call stuck in
the kernel (an ``open`` on a hung network file system) keeps the process from ever
exiting, and a few such calls fill the executor, so later calls wait behind them. A
deadline around the *wait* stops neither. :func:`in_daemon_thread` runs the call in a
thread of its own, marked daemon, that nothing waits for: at its deadline the caller
gets :class:`StillRunning` (which names the thread, so the caller can refuse to start
another while it is stuck), and at exit the thread is abandoned.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class StillRunning(TimeoutError):
    """The call did not return in time; ``thread`` still runs it (a daemon: it never
    holds up exit, and what it returns is dropped)."""

    def __init__(self, thread: threading.Thread, timeout: float) -> None:
        super().__init__(f"{thread.name} did not finish within {timeout:g} s")
        self.thread = thread


async def in_daemon_thread(fn: Callable[..., T], *args: Any, timeout: float, name: str) -> T:
    """``fn(*args)`` in a new daemon thread, awaited at most ``timeout`` seconds.

    Its exception is raised here; :class:`StillRunning` when the deadline passes first.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():  # the waiter may have given up (deadline, cancellation)
            outcome()

    def deliver(outcome: Callable[[], None]) -> None:
        try:
            loop.call_soon_threadsafe(settle, outcome)
        except RuntimeError:
            pass  # the loop is closed: no one waits any more

    def run() -> None:
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the waiter, raised there
            error = exc
            deliver(lambda: future.set_exception(error))
        else:
            deliver(lambda: future.set_result(result))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        return await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        raise StillRunning(thread, timeout) from None
