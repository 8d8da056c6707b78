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


def test_a_group_whose_only_member_is_an_unreaped_zombie_is_settled_by_reaping_it(monkeypatch):
    """The stop's group check: the leader died an instant ago and its SIGCHLD was not
    handled yet. Reaping it answers; no scan of every process (~15 ms at 1,000)."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        child.kill()
        while procfs.state(child.pid) != "Z":
            pass
        scans = [0]
        real = procfs.pids

        def counted():  # type: ignore[no-untyped-def]
            scans[0] += 1
            return real()

        monkeypatch.setattr(procfs, "pids", counted)
        assert signalling.live_groups([child.pid], reap=lambda: child.wait()) == set()
        assert scans[0] == 0
        assert child.returncode == -9
    finally:
        if child.returncode is None:
            child.kill()
            child.wait()


def test_without_a_reap_a_zombie_leader_s_group_is_settled_by_a_scan(monkeypatch):
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        child.kill()
        while procfs.state(child.pid) != "Z":
            pass
        scans = [0]
        real = procfs.pids

        def counted():  # type: ignore[no-untyped-def]
            scans[0] += 1
            return real()

        monkeypatch.setattr(procfs, "pids", counted)
        assert signalling.live_groups([child.pid]) == set()
        assert scans[0] == 1
    finally:
        child.kill()
        child.wait()
