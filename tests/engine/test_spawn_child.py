"""Patrol drops the ``Popen`` of an app's process right after the spawn (it keeps the pid
only): the exit status must still reach the reaper, never ``subprocess``'s own polling."""

from __future__ import annotations

import gc
import os
import subprocess

from patrol.engine.spawn import spawn
from patrol.testing import wait_for


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return False


def test_a_dropped_spawn_leaves_its_exit_status_to_the_reaper() -> None:
    proc = spawn(["/bin/sh", "-c", "exit 7"], env={"PATH": "/usr/bin:/bin"}, cwd="/", stdout=None, stderr=None)
    pid = proc.pid
    try:
        del proc
        gc.collect()
        wait_for(lambda: _zombie(pid), timeout=10)
        # any later Popen polls the children subprocess was left with (subprocess._cleanup)
        subprocess.run(["/bin/true"], check=True)
        assert not any(p.pid == pid for p in subprocess._active or ())  # type: ignore[attr-defined]
    finally:
        waited, status = os.waitpid(pid, 0)  # ChildProcessError here: someone else took it
    assert waited == pid and os.waitstatus_to_exitcode(status) == 7
