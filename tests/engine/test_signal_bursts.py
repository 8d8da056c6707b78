"""A burst of one signal is one callback on the loop, and a burst of exits is reaped one
restart per turn of the loop: crash loops under load cannot fill a turn with spawns.

Found in the suite under load: with apps crashing as fast as they were restarted, every
SIGCHLD had queued a reap of its own, each reap restarted one app (a spawn, tens of ms
on a busy machine), and one turn of the loop ran them all, for more than the 10 s a
``/status/`` request waited.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

from patrol.engine.signals import SignalRouter


def test_a_burst_of_one_signal_is_one_call_and_a_later_one_another() -> None:
    async def scenario() -> tuple[list[int], int, int]:
        loop = asyncio.get_running_loop()
        router = SignalRouter(loop)
        calls: list[int] = []
        router.add(signal.SIGUSR1, lambda: calls.append(router.received[signal.SIGUSR1]))
        try:
            for _ in range(5):  # each one's Python handler runs here, on this thread, at once
                os.kill(os.getpid(), signal.SIGUSR1)
            burst = router.received[signal.SIGUSR1]
            for _ in range(3):
                await asyncio.sleep(0)
            os.kill(os.getpid(), signal.SIGUSR1)
            router.again(signal.SIGUSR1)  # asked for while the arrival's call is queued: nothing more
            for _ in range(3):
                await asyncio.sleep(0)
            return calls, burst, router.received[signal.SIGUSR1]
        finally:
            router.close()

    calls, burst, total = asyncio.run(scenario())
    assert burst == 5 and total == 6
    assert calls == [5, 6], "one call for the burst of five, one for the sixth signal"


#: Six children exit (six SIGCHLDs, not blocked) while the loop is busy in one callback;
#: each report asks for a restart. A ticker marks every turn of the loop.
BURST = r"""
import asyncio, json, os, subprocess
from patrol.engine.reaper import Reaper
from patrol.engine.signals import SignalRouter

async def scenario():
    loop = asyncio.get_running_loop()
    reaper = Reaper(loop, SignalRouter(loop))
    reaper.install()
    order, done = [], loop.create_future()
    children = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(6)]

    def exited(name):
        def report(status):
            order.append(f"reported {name}")
            def restart():
                order.append(f"restart {name}")
                if sum(e.startswith("restart") for e in order) == len(children) and not done.done():
                    done.set_result(None)
            reaper.soon(restart)
        return report

    def tick():
        order.append("turn")
        if not done.done():
            loop.call_soon(tick)

    for i, child in enumerate(children):
        reaper.watch(child.pid, exited(str(i)), owner=str(i))
    for child in children:  # on this thread, within one callback: six SIGCHLDs, one by one
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    loop.call_soon(tick)
    await asyncio.wait_for(done, 30)
    return order

print(json.dumps(asyncio.run(scenario())))
"""


def test_a_burst_of_exits_restarts_one_app_per_turn_of_the_loop() -> None:
    done = subprocess.run([sys.executable, "-c", BURST], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    order: list[str] = json.loads(done.stdout)
    restarts = [i for i, entry in enumerate(order) if entry.startswith("restart")]
    assert len(restarts) == 6, order
    for before, after in zip(restarts, restarts[1:]):
        assert "turn" in order[before:after], f"two restarts in one turn of the loop: {order}"
