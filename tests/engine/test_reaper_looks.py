"""How often the reaper looks for exited children: ``waitpid(-1)`` walks every child of
Patrol in the kernel, so with thousands of apps each look counts.

Real children of the test (it plays Patrol), real SIGCHLD; ``os.waitpid`` is only
counted, never replaced.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess

import pytest

from patrol.engine import reaper as reaper_module
from patrol.engine.reaper import Reaper
from patrol.plugin.keepalive import ExitStatus


@pytest.fixture
def looks(monkeypatch):
    """How many times ``waitpid(-1)`` was called (each a walk over every child)."""
    count = [0]
    real = os.waitpid

    def counted(pid: int, options: int):
        if pid == -1:
            count[0] += 1
        return real(pid, options)

    monkeypatch.setattr(reaper_module.os, "waitpid", counted)
    return count


@pytest.fixture
def sleepers():
    started: list[subprocess.Popen[bytes]] = []

    def start(count: int) -> list[subprocess.Popen[bytes]]:
        for _ in range(count):
            started.append(subprocess.Popen(["sleep", "60"], start_new_session=True))
        return started[-count:]

    yield start
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            try:
                os.waitpid(proc.pid, 0)
            except ChildProcessError:
                pass  # reaped by the test's reaper


def test_an_exit_callback_that_reaps_spares_the_reaper_a_further_look(sleepers, looks) -> None:
    """An exit's handling reaps itself (to collect statuses already there): the loop
    that called it then ends instead of walking every child once more."""
    child = sleepers(1)[0]
    sleepers(2)  # others that stay

    async def scenario() -> tuple[ExitStatus, int]:
        loop = asyncio.get_running_loop()
        reaper = Reaper(loop)
        got: list[ExitStatus] = []

        def exited(status: ExitStatus) -> None:
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

    status, count = asyncio.run(scenario())
    child.returncode = -9
    assert status.signal == signal.SIGKILL
    assert count == 2, f"{count} looks for one exit (the pid, then nothing more: 2)"
