"""Start bursts (patrol/engine/spawn_batch.py): the work after each spawn is queued until
the burst is spawned, and no exit status can slip past a watcher still queued."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from functools import partial

from patrol.engine.reaper import Reaper
from patrol.engine.spawn_batch import SpawnBatch
from patrol.plugin.keepalive import ExitStatus
from patrol.testing import wait_for


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_reap_inside_a_burst_first_sets_the_queued_watchers():
    """A child that exits before its queued watcher is set is reaped by someone else in the
    same burst (a service command reaps): its status still reaches the watcher."""
    statuses: dict[int, ExitStatus] = {}

    async def main() -> None:
        spawns = SpawnBatch()
        reaper = Reaper(asyncio.get_running_loop(), before_reap=spawns.flush)
        reaper.install()
        try:
            with spawns.burst():
                procs = [subprocess.Popen(["/bin/sh", "-c", f"exit {code}"]) for code in (3, 4)]
                for proc in procs:
                    spawns.after(str(proc.pid), partial(reaper.watch, proc.pid, partial(statuses.__setitem__, proc.pid)))
                assert not statuses and all(reaper.watcher(p.pid) is None for p in procs)  # queued, not done
                deadline = time.monotonic() + 10
                while not all(_is_zombie(p.pid) for p in procs):  # both ended, nobody reaped them yet
                    assert time.monotonic() < deadline
                    time.sleep(0.005)
                reaper.reap()  # what a service command started in the burst does
            assert {pid: s.code for pid, s in statuses.items()} == {procs[0].pid: 3, procs[1].pid: 4}
        finally:
            reaper.uninstall()

    asyncio.run(main())


def test_outside_a_burst_the_work_is_done_at_once_and_a_failing_job_spares_the_others():
    spawns = SpawnBatch()
    done: list[str] = []
    spawns.after("a", partial(done.append, "a"))
    assert done == ["a"]

    def broken() -> None:
        raise RuntimeError("a plugin's bug")

    with spawns.burst():
        spawns.after("b", partial(done.append, "b"))
        spawns.after("bad", broken)
        with spawns.burst():  # nested: only the outermost burst's end does the work
            spawns.after("c", partial(done.append, "c"))
        assert done == ["a"]
    assert done == ["a", "b", "c"]


def test_apps_that_die_at_once_in_the_start_burst_are_each_seen_and_restarted(patrol, tmp_path):
    """Half the apps of a start burst exit at once (code 3): every exit is recorded with its
    code and the app is started again; the others run (nothing is lost between the spawns
    and the queued work after them)."""
    apps = {}
    for i in range(30):
        env = [f"TESTAPP_STARTLOG={tmp_path / f'a{i}.starts'}"] + (["TESTAPP_EXIT=3"] if i % 2 == 0 else [])
        # backoff-reset 10: a crasher (up well under 10 s) backs off 0, 0.05, 0.1, ... s; a
        # reset at its own start-up time restarted the 15 crashers back to back for the
        # whole test, 15 Python starts at a time saturating the CPU the wait needs
        apps[f"a{i}"] = patrol.app(1, env=env, **{"backoff-base": 0.05, "backoff-reset": 10})
    p = patrol.start(patrol.config(apps=apps))
    for i in range(0, 30, 2):
        wait_for(lambda i=i: starts(tmp_path / f"a{i}.starts") >= 3, 20, f"a{i} started again after its exits")
        assert p.app(f"a{i}")["last-exit"] == "exit code 3"
    for i in range(1, 30, 2):
        pid = p.running_pid(f"a{i}")
        assert os.path.exists(f"/proc/{pid}") and starts(tmp_path / f"a{i}.starts") == 1


def starts(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0
