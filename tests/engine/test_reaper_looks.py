"""How often the reaper looks for exited children: ``waitpid(-1)`` walks every child of
Patrol in the kernel, so with thousands of apps each look counts.

Real children of a fresh interpreter (it plays Patrol), real SIGCHLD; ``os.waitpid`` is only
counted, never replaced.
"""

from __future__ import annotations

import subprocess
import sys

#: Played in a fresh interpreter: ``waitpid(-1)`` would also collect every child the test
#: process has left from earlier tests, and each such collection is one more look.
SCENARIO = r"""
import asyncio, os, signal, subprocess, sys
from patrol.engine import reaper as reaper_module
from patrol.engine.reaper import Reaper

looks = [0]
real = os.waitpid

def counted(pid, options):
    if pid == -1:
        looks[0] += 1
    return real(pid, options)

reaper_module.os.waitpid = counted  # only counted, never replaced
child = subprocess.Popen(["sleep", "60"], start_new_session=True)
others = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(2)]  # they stay

async def scenario():
    reaper = Reaper(asyncio.get_running_loop())
    got = []

    def exited(status):
        got.append(status)
        reaper.reap()  # as AppControl.dead does

    reaper.watch(child.pid, exited, owner="test")
    child.kill()
    for _ in range(3000):  # the child is a zombie once /proc says so
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == "Z":
                break
        await asyncio.sleep(0.01)
    before = looks[0]
    reaper.reap()
    return got[0], looks[0] - before

try:
    status, count = asyncio.run(scenario())
    print(int(status.signal == signal.SIGKILL), count)
finally:
    for proc in others:
        proc.kill()
        real(proc.pid, 0)
"""


def test_an_exit_callback_that_reaps_spares_the_reaper_a_further_look() -> None:
    """An exit's handling reaps itself (to collect statuses already there): the loop
    that called it then ends instead of walking every child once more."""
    done = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    killed, count = map(int, done.stdout.split())
    assert killed == 1, "the exit status should say SIGKILL"
    assert count == 2, f"{count} looks for one exit (the pid, then nothing more: 2)"
