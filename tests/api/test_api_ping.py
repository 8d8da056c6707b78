"""Which pinged pids Patrol may act on (spec 10.17): those started for the app."""

from __future__ import annotations

import os
import subprocess

from patrol.engine.ownership import started_for
from patrol.testing import wait_for


def environ_of(pid: int) -> list[bytes]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return f.read().split(b"\0")


def test_a_process_started_for_the_app_is_recognised_by_its_environment():
    proc = subprocess.Popen(["sleep", "30"], env={**os.environ, "PATROL_ID": "web"})
    try:
        wait_for(lambda: started_for(proc.pid, "web"), 5, "the new program's environment")
        assert not started_for(proc.pid, "we")  # a whole entry, not a prefix
        assert not started_for(proc.pid, "other")
    finally:
        proc.kill()
        proc.wait()


def test_any_other_process_is_not():
    env = {k: v for k, v in os.environ.items() if k != "PATROL_ID"}
    proc = subprocess.Popen(["sleep", "30"], env={**env, "NOT_PATROL_ID": "web", "X": "PATROL_ID=web"})
    try:
        wait_for(lambda: b"NOT_PATROL_ID=web" in environ_of(proc.pid), 5, "the new program's environment")
        assert not started_for(proc.pid, "web")
    finally:
        proc.kill()
        proc.wait()
    assert not started_for(proc.pid, "web")  # gone
    assert not started_for(0, "web")
