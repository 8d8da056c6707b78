"""What an exit asks for (a restart) runs at the end of the reap a SIGCHLD ran, ahead of
what the exit merely queued on the loop (the state file's commit, log pipes' end of file).

Real children of a fresh interpreter (it plays Patrol: ``waitpid(-1)`` would also collect
the test process's own children), real SIGCHLD through Patrol's signal router.
"""

from __future__ import annotations

import subprocess
import sys

SCENARIO = r"""
import asyncio, json, os, signal, subprocess
from patrol.engine.reaper import Reaper
from patrol.engine.signals import SignalRouter

async def scenario():
    loop = asyncio.get_running_loop()
    reaper = Reaper(loop, SignalRouter(loop))
    reaper.install()
    order = []
    ended = loop.create_future()

    def job(name):
        def run():
            order.append(name)
            if name == "queued by the exit" and not ended.done():
                ended.set_result(None)
        return run

    def exited_on_signal(status):
        loop.call_soon(job("queued by the exit"))  # as the state file's commit is
        reaper.soon(job("restart"))
        order.append("reported")

    # 1. the reap a SIGCHLD runs: the restart comes before what the exit queued
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    reaper.watch(child.pid, exited_on_signal, owner="test")
    child.kill()
    await asyncio.wait_for(ended, 30)
    signalled = list(order)

    # 2. a reap someone else calls (a keepalive reporting a death): its caller is still
    #    on the stack when the reap ends, so the restart waits for the loop's next turn
    order.clear()
    inside_caller = []

    def exited_in_caller(status):
        reaper.soon(job("restart"))
        order.append("reported")

    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    reaper.uninstall()  # so that only the direct reap below reports it
    reaper.watch(other.pid, exited_in_caller, owner="test")
    other.kill()
    os.waitid(os.P_PID, other.pid, os.WEXITED | os.WNOWAIT)  # a zombie now, not reaped
    reaper.reap()
    inside_caller = list(order)
    for _ in range(3):
        await asyncio.sleep(0)
    return {"signalled": signalled, "inside_caller": inside_caller, "after": list(order)}

print(json.dumps(asyncio.run(scenario())))
"""


def _run() -> dict[str, list[str]]:
    import json

    done = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


def test_a_restart_an_exit_asks_for_runs_before_what_the_exit_queued() -> None:
    result = _run()
    assert result["signalled"] == ["reported", "restart", "queued by the exit"]
    # outside the SIGCHLD's reap nothing changes: the job is the loop's, after the caller returned
    assert result["inside_caller"] == ["reported"], "the restart ran under the caller of reap()"
    assert result["after"] == ["reported", "restart"]
