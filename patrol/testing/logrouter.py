"""Waiting on a :class:`~patrol.engine.logrouter.LogRouter` in tests: its tick drives
the checks (idle closes, deleted files) that a running Patrol's loop would."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

#: polls of ``until`` (every POLL_SECONDS: 30 s in all)
POLLS = 3000
POLL_SECONDS = 0.01


async def ticking_until(router: Any, condition: Callable[[], object], message: str) -> None:
    """Tick ``router`` until ``condition()`` holds; ``AssertionError(message)`` after 30 s."""
    for _ in range(POLLS):
        if condition():
            return
        router.tick()
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(message)
