"""How often the reaper looks for exited children: ``waitpid(-1)`` walks every child of
Patrol in the kernel, so with thousands of apps each look counts.

Real children of a fresh interpreter (it plays Patrol), real SIGCHLD; ``os.waitpid`` is only
counted, never replaced.
"""

from __future__ import annotations

import subprocess
import sys

#: Every scenario's start: the reaper's ``waitpid(-1)`` calls are counted (``looks``)
COUNTED = r"""
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

def zombie(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0] == "Z"
"""

#: Played in a fresh interpreter: ``waitpid(-1)`` would also collect every child the test
#: process has left from earlier tests, and each such collection is one more look.
SCENARIO = COUNTED + r"""
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
        if zombie(child.pid):
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


#: A stop polls the reaper every few ms while it waits (N apps at shutdown: N pollers).
POLLS = COUNTED + r"""
children = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(3)]


async def scenario():
    reaper = Reaper(asyncio.get_running_loop())
    got = []
    reaper.watch(children[0].pid, got.append, owner="test")
    reaper.install()
    before = looks[0]
    for _ in range(100):  # nothing exited: the polls look at nothing
        reaper.reap_if_signalled()
    quiet = looks[0] - before
    children[0].kill()
    while not zombie(children[0].pid):  # no await: the loop's own SIGCHLD callback cannot run
        pass
    reaper.reap_if_signalled()  # the handler has counted the signal: this poll looks
    polled = len(got)
    reaper.uninstall()
    before = looks[0]
    reaper.reap_if_signalled()  # no handler: nothing tells of exits, so it always looks
    return quiet, polled, looks[0] - before, got[0].signal == signal.SIGKILL

try:
    print(*map(int, asyncio.run(scenario())))
finally:
    for proc in children[1:]:
        proc.kill()
        real(proc.pid, 0)
"""


def test_polls_look_for_exited_children_only_after_a_sigchld() -> None:
    """A stop waiting for its processes polls the reaper: each look walks every child,
    so with no SIGCHLD since the last complete look (no exit since) a poll looks at
    nothing; after one, the very next poll collects the status (the loop's own callback
    has not even run yet); without the handler it always looks."""
    done = subprocess.run([sys.executable, "-c", POLLS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    quiet, polled, uninstalled, killed = map(int, done.stdout.split())
    assert quiet == 0, f"{quiet} looks in 100 polls while no child exited"
    assert polled == 1 and killed == 1, "the poll after the SIGCHLD should have collected the SIGKILL status"
    assert uninstalled >= 1


#: 100 children end at once; the reaper's look runs as the loop's SIGCHLD callback does.
SLICES = COUNTED + r"""
from patrol.engine.reaper import REAP_SLICE
children = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(100)]


async def scenario():
    loop = asyncio.get_running_loop()
    reaper = Reaper(loop)
    events = []
    for child in children:
        reaper.watch(child.pid, lambda status: events.append("exit"), owner="test")
    for child in children:
        child.kill()
    for child in children:
        while not zombie(child.pid):
            await asyncio.sleep(0.001)

    def turn():  # another callback of the loop: a request, a ping
        events.append("turn")
        if events.count("exit") < len(children):
            loop.call_soon(turn)

    loop.call_soon(turn)
    reaper.reap_if_signalled()  # no handler installed: it looks, as the SIGCHLD callback does
    first = events.count("exit")
    for _ in range(10_000):
        if events.count("exit") == len(children):
            break
        await asyncio.sleep(0)
    runs, current = [], 0  # exits handled back to back, between two turns of the loop
    for event in events:
        if event == "exit":
            current += 1
        elif current:
            runs, current = runs + [current], 0
    runs += [current] if current else []
    return REAP_SLICE, first, events.count("exit"), max(runs), len(runs)

print(*asyncio.run(scenario()))
"""


def test_the_exits_of_many_children_are_handled_a_slice_at_a_time() -> None:
    """500 apps ending at once were one callback of ~300 ms: the loop (requests, pings)
    waited for all of them. A look handles REAP_SLICE exits, and the next look comes at
    the loop's next turn; every exit is handled."""
    done = subprocess.run([sys.executable, "-c", SLICES], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    slice_, first, handled, longest, runs = map(int, done.stdout.split())
    assert first == slice_ < 100, f"the first look handled {first} exits"
    assert handled == 100, f"{handled} of 100 exits handled"
    assert longest <= slice_ and runs >= 100 // slice_, f"{runs} runs of exits, the longest {longest}"
