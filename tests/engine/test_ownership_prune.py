"""Recording a spawned process stays cheap however many live processes Patrol owns.

The records of proven processes are pruned (a ``/proc`` read per record) once they
reach a bound. With a fixed bound of 4,096 and more live apps than that, every spawn
pruned and found nothing to drop: a 5,000-app start went from ~10 ms to ~700 ms per
spawn at exactly the 4,097th app. After a prune the next one now waits until the
records have doubled, and dead processes are still dropped.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from patrol.engine import ownership
from patrol.engine.ownership import Ownership


@pytest.fixture
def children():
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_live_processes_beyond_the_bound_are_not_pruned_at_every_spawn(monkeypatch, children):
    monkeypatch.setattr(ownership, "PRUNE_AT", 8)
    owned = Ownership()
    prunes = [0]
    prune = owned._prune

    def counting() -> None:
        prunes[0] += 1
        prune()

    monkeypatch.setattr(owned, "_prune", counting)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    for i in range(40):  # five times the bound, all alive, each in its own session
        proc = subprocess.Popen(sleeper, start_new_session=True)
        children.append(proc)
        assert owned.spawned(f"app/a{i}", proc.pid) is not None
    assert prunes[0] <= 4  # 8, 16, 32 (doubling), not once per spawn past the bound (32)
    assert all(owned.owner(p.pid) == f"app/a{i}" for i, p in enumerate(children))

    for proc in children[:30]:  # most of them end: the next prune drops them
        proc.kill()
        proc.wait()
        owned.exited(proc.pid)
    before = prunes[0]
    for i in range(40, 80):
        proc = subprocess.Popen(sleeper, start_new_session=True)
        children.append(proc)
        owned.spawned(f"app/a{i}", proc.pid)
    assert prunes[0] > before  # the sessions of the dead were dropped at a prune
    assert len(owned._sessions) < 80 - 10
    assert os.getpid() not in owned._pids
