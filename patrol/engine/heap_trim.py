"""Handing the C allocator's free memory back to the system once a burst of work is over.

A start (or a reload) of hundreds of apps allocates and frees a lot at once: JSON of
state rows, spawn arguments, log lines, the writer threads' buffers. glibc's malloc
keeps what was freed for reuse, in the main heap and in the arenas of the threads
that allocated it, and an idle Patrol never reuses most of it: at 500 and 1,000 apps
``malloc_trim(0)`` gives back 1.0 and 1.5 MB of resident memory (the pages of free
chunks, and each heap's free top). It is called once the burst has settled, on the
loop: it walks the allocator's free lists, about a millisecond for Patrol's heap, and
nothing in it waits on anything outside the process. Where the C library has no such
call (musl), nothing is done.

A big answer is such a burst too: building ``/status/`` of 500 apps (150 KB) and sending
it leaves ~0.2 MiB of free heap resident for good (measured: 40.1 -> 39.9 MiB after one
trim). :func:`release_soon` trims a moment after one, at most once per
:data:`SOON_EVERY`: a dashboard polling twice a second costs one trim a minute. The
big blocks of the answers after it are kept out of the heap: :func:`fix_mmap_threshold`.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from typing import Callable

import structlog

log = structlog.get_logger("patrol")

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _glibc(name: str, *argtypes: type) -> Callable[..., int] | None:
    """The C library's function ``name`` returning an int, or None where it has none (musl)."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = list(argtypes), ctypes.c_int
    return function


_trim = _glibc("malloc_trim", ctypes.c_size_t)

#: ``mallopt``'s parameter number for the size from which a block gets a mapping of its own
M_MMAP_THRESHOLD = -3
#: glibc's own starting value: blocks this big are mapped and unmapped one by one
MMAP_THRESHOLD = 128 * 1024


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Keep blocks of ``size`` bytes and more out of the heap for good (False where the C
    library cannot).

    glibc starts by mapping each block of 128 KiB or more on its own, so freeing it gives
    the memory back, but once such a block is freed it raises that threshold to the
    block's size: from the second ``/status/`` of 500 apps on (150 KB), every answer came
    from the heap and left its pages resident (+0.2 MiB at the second answer, measured,
    between two trims a minute apart). Setting the threshold turns the raising off. The
    cost is a map and an unmap per such block, a few microseconds beside the
    milliseconds of building an answer that big. Process-wide: ``patrol run`` sets it.
    """
    mallopt = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, size))


def resident_bytes() -> int:
    """This process's resident set (``/proc/self/statm``), in bytes."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def release_free_memory() -> int | None:
    """Give the allocator's free pages back; the bytes of resident memory it freed
    (None where the C library cannot)."""
    if _trim is None:
        return None
    before = resident_bytes()
    _trim(0)
    return before - resident_bytes()


def release_after_burst() -> None:
    """:func:`release_free_memory`, said in the debug log (how much, how long it took)."""
    started = time.perf_counter()
    freed = release_free_memory()
    if freed is not None:
        log.debug("released free memory", freed_bytes=freed, took_ms=round((time.perf_counter() - started) * 1e3, 2))


#: seconds after a big answer before its free memory is handed back (it is sent by then)
SOON_DELAY = 1.0
#: at most one such release per this many seconds
SOON_EVERY = 60.0
#: the loop a release is scheduled on, and when the last one was scheduled (monotonic)
_soon: tuple[asyncio.AbstractEventLoop, float] | None = None


def release_soon(loop: asyncio.AbstractEventLoop, *, delay: float = SOON_DELAY, every: float = SOON_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> bool:
    """Schedule :func:`release_after_burst` ``delay`` s from now on ``loop``, unless one
    was scheduled on it less than ``every`` s ago; True when scheduled."""
    global _soon
    now = clock()
    if _trim is None or (_soon is not None and _soon[0] is loop and now - _soon[1] < every):
        return False
    _soon = (loop, now)
    loop.call_later(delay, release_after_burst)
    return True
