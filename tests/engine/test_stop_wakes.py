"""A stop learns of its processes' end from their exit, not from its next look.

A stop waits for the run's processes, looking again every few ms for what gives no
signal. The exit of a child of Patrol does give one: the reaper's report wakes the stop
at once. And a group whose leader has just died is settled by reaping that zombie, not
by a scan of every process.

Real children (the test plays Patrol in the second test), a real daemon in the first.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from patrol.engine import app_stop, procfs, signalling
from patrol.testing import write_testapp


def test_a_stop_is_woken_by_the_exit_of_the_run_s_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """With the looks made 30 s apart, only the exit can end the stop's wait: the
    shutdown still ends within seconds (before, it waited for the look)."""
    from patrol.daemon import Daemon
    from patrol.plugin.loader import Plugins
    from patrol.plugin.model import AppConfig, PatrolConfig

    monkeypatch.setattr(app_stop, "POLL_FIRST", 30.0)
    monkeypatch.setattr(app_stop, "POLL_LONGEST", 30.0)
    write_testapp(tmp_path)
    apps = {f"t{i}": AppConfig(id=f"t{i}", keepalive="pid-patrol", name="T", binary="testapp",
                               working_directory=str(tmp_path), log_directory="logs", pid_path=f"t{i}.pid")
            for i in range(3)}
    daemon = Daemon(PatrolConfig(apps=apps, services={}), Plugins(strict=True))

    async def script() -> float:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(daemon.run(transports=False))
        deadline = loop.time() + 20
        while not all(r.state.pid for r in daemon.supervisor.apps.values()):
            assert loop.time() < deadline, "the apps did not start"
            await asyncio.sleep(0.01)
        pids = [r.state.pid for r in daemon.supervisor.apps.values()]
        asked = loop.time()
        daemon.supervisor.request_shutdown()
        try:
            await asyncio.wait_for(task, 10)
        finally:
            for pid in pids:  # (by pid, whatever happened)
                signalling.signal_pid(pid, 9)
        return loop.time() - asked

    took = asyncio.run(script())
    assert took < 10  # (wait_for raised otherwise): it did not wait for a 30 s look


@pytest.fixture
def zombie():
    """A child of the test in a session of its own, killed and not reaped yet."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    child.kill()
    while procfs.state(child.pid) != "Z":
        pass
    yield child
    child.wait()  # (reaped already by the test that settles it: then a no-op)


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times every process is listed (each is a scan of all of them)."""
    count = [0]
    real = procfs.pids

    def counted():  # type: ignore[no-untyped-def]
        count[0] += 1
        return real()

    monkeypatch.setattr(procfs, "pids", counted)
    return count


def test_a_group_whose_only_member_is_an_unreaped_zombie_is_settled_by_reaping_it(zombie, scans):
    """The stop's group check: the leader died an instant ago and its SIGCHLD was not
    handled yet. Reaping it answers; no scan of every process (~15 ms at 1,000)."""
    assert signalling.live_groups([zombie.pid], reap=lambda: zombie.wait()) == set()
    assert scans[0] == 0
    assert zombie.returncode == -9


def test_without_a_reap_a_zombie_leader_s_group_is_settled_by_a_scan(zombie, scans):
    assert signalling.live_groups([zombie.pid]) == set()
    assert scans[0] == 1
