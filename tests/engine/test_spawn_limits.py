"""Children get the descriptor limit Patrol was started with, not the one it raised.

Patrol raises its own soft ``RLIMIT_NOFILE`` (it holds pipes and files for every app,
and HTTP connections); a program started by a service manager expects the usual soft
limit (systemd: 1024), e.g. for ``select()``. The one spawn function hands it back.
"""

from __future__ import annotations

import resource

import pytest

from patrol.testing import PatrolFactory


def soft_open_files(pid: int) -> int:
    """The soft "Max open files" of a process, from ``/proc/PID/limits``."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError(f"no open-files limit for pid {pid}")


@pytest.mark.parametrize("keys", [{}, {"nice": 1, "limits": {"core": 0}}], ids=["plain", "through-the-launcher"])
def test_an_app_gets_the_soft_descriptor_limit_patrol_was_started_with(patrol: PatrolFactory, keys) -> None:
    """Also when other limits or a nice value are set (the launcher sets them): a limit
    the config does not name is the one Patrol was started with."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 1024
    if hard != resource.RLIM_INFINITY and hard <= low:
        pytest.skip(f"the hard limit ({hard}) leaves Patrol nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))  # inherited by the Patrol started now
    try:
        p = patrol.start(patrol.config(apps={"a": patrol.app(1, **keys)}))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    app = p.running_pid("a")
    assert soft_open_files(p.pid) > low  # Patrol raised its own
    assert soft_open_files(app) == low  # and its app has the one Patrol was started with
