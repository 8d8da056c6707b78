"""A child started by the spawn thread is that thread's child: the kernel sends its
SIGCHLD to that thread, whose C handler only sets Python's flag. The loop, asleep in
``epoll_wait`` on the main thread, must still wake up at once (the signal wakeup
descriptor), not at its next timer.

A fresh interpreter plays Patrol (its own reaper, signal router and loop); the only
timer on its loop is a 20 s deadline, so an exit seen late is seen ~20 s late.
"""

from __future__ import annotations

import json
import subprocess
import sys

SCENARIO = r"""
import asyncio, json, os, time
from patrol.engine import spawn_thread
from patrol.engine.reaper import Reaper
from patrol.engine.signals import SignalRouter
from patrol.engine.spawn import spawn

async def scenario():
    loop = asyncio.get_running_loop()
    router = SignalRouter(loop)
    reaper = Reaper(loop, router)
    reaper.install()
    seen = loop.create_future()
    results = []
    for _ in range(3):
        seen = loop.create_future()
        child = spawn(["/bin/sh", "-c", "sleep 0.3"], env={}, cwd="/", stdout=None, stderr=None)
        reaper.watch(child.pid, lambda status, f=seen: f.set_result(time.monotonic()), owner="test")
        started = time.monotonic()
        handled = await asyncio.wait_for(seen, 20)
        results.append(handled - started)
    thread = spawn_thread.current()
    reaper.uninstall()
    router.close()
    return {"thread": thread.native_id if thread else None, "seconds": results}

# twice, as a process running several loops one after the other (a test run) does: the
# second loop's router has a wakeup descriptor of its own, which a new thread must keep
print(json.dumps([asyncio.run(scenario()), asyncio.run(scenario())]))
"""


def test_a_child_of_the_spawn_thread_wakes_the_sleeping_loop_when_it_exits() -> None:
    done = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout)
    assert first["thread"] and second["thread"], "the children were not started by the spawn thread"
    assert first["thread"] != second["thread"]  # the first loop's wakeup descriptor went with its thread
    # each child lives 0.3 s; its exit must be handled then, not at the loop's 20 s deadline
    assert max(first["seconds"] + second["seconds"]) < 10, (first, second)
