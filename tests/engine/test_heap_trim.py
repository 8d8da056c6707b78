"""After a start or a reload burst, Patrol hands the C allocator's free memory back.

The burst allocates and frees a lot at once; an idle Patrol would keep those pages
resident for its whole life. Black-box against ``patrol run``: the debug log says when
it happened and how much it gave back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from patrol.engine import heap_trim
from patrol.engine.heap_trim import release_free_memory, resident_bytes
from patrol.testing import wait_for


def releases(log: str) -> list[dict[str, object]]:
    found = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "released free memory":
            found.append(record)
    return found


def test_free_memory_is_released_after_the_start_and_after_each_reload(patrol):
    apps = {"a": patrol.app(1), "b": patrol.app(1)}
    p = patrol.start(patrol.config(apps=apps))
    p.running_pid("a")
    wait_for(lambda: len(releases(p.log())) == 1, 15, "the release after the start")
    first = releases(p.log())[0]
    assert isinstance(first["freed_bytes"], int) and isinstance(first["took_ms"], float)
    p.config = dict(p.config, apps={"a": apps["a"], "c": patrol.app(1)})
    p.write_config()
    os.kill(p.pid, signal.SIGHUP)
    wait_for(lambda: set(p.status()["apps"]) == {"a", "c"}, 10, "the reload")
    wait_for(lambda: len(releases(p.log())) == 2, 15, "the release after the reload")
    p.running_pid("a")  # supervision goes on


@pytest.mark.skipif(heap_trim._trim is None, reason="the C library has no malloc_trim (not glibc)")
def test_releasing_gives_back_freed_pages_in_this_process():
    held = [bytearray(64 * 1024) for _ in range(400)]  # 25 MiB of malloc'd chunks, touched
    for chunk in held:
        chunk[::4096] = b"x" * len(chunk[::4096])
    del held[::2]  # half freed: holes the allocator keeps for reuse
    before = resident_bytes()
    freed = release_free_memory()
    assert freed is not None and freed > 4 * 1024 * 1024  # most of the 12.5 MiB of holes
    assert resident_bytes() < before


def test_release_soon_is_scheduled_at_most_once_per_interval():
    """A dashboard polling a big ``/status/`` twice a second must not trim twice a second."""
    if heap_trim._trim is None:
        pytest.skip("the C library has no malloc_trim")
    now = [1000.0]

    async def scenario() -> list[bool]:
        loop = asyncio.get_running_loop()
        asked = [heap_trim.release_soon(loop, delay=0, every=60, clock=lambda: now[0])]
        asked.append(heap_trim.release_soon(loop, delay=0, every=60, clock=lambda: now[0]))
        now[0] += 59
        asked.append(heap_trim.release_soon(loop, delay=0, every=60, clock=lambda: now[0]))
        now[0] += 2
        asked.append(heap_trim.release_soon(loop, delay=0, every=60, clock=lambda: now[0]))
        await asyncio.sleep(0.01)  # the scheduled releases run (they must not raise)
        return asked

    assert asyncio.run(scenario()) == [True, False, False, True]
    # another loop (a new Patrol in this process) is not held back by the last one's
    assert asyncio.run(_ask_once(lambda: now[0])) is True


async def _ask_once(clock) -> bool:
    return heap_trim.release_soon(asyncio.get_running_loop(), delay=0, clock=clock)


MAPPED_BLOCKS = """
import ctypes, sys
from patrol.engine import heap_trim

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
if sys.argv[1] == "fixed":
    assert heap_trim.fix_mmap_threshold()
first = bytearray(400_000)  # mapped on its own; freeing it raises glibc's threshold past 200 KB
del first
before = mallinfo2().hblks
second = bytearray(200_000)
print(mallinfo2().hblks - before)
"""


@pytest.mark.parametrize(("mode", "mapped"), [("default", "0"), ("fixed", "1")])
def test_a_fixed_mmap_threshold_keeps_big_answers_out_of_the_heap(mode, mapped):
    # glibc raises its threshold when a mapped block is freed: the next big answer then
    # comes from the heap and its pages stay resident; with the threshold fixed it is
    # mapped (and unmapped when freed). In a child: the setting is process-wide.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", MAPPED_BLOCKS, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == mapped
