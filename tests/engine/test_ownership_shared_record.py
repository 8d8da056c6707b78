"""A spawned session leader is recorded once for its pid and its session.

Patrol spawns every app in a session of its own, so the app's record (owner, start) is
also its session's: one tuple is kept for both (one per app fewer, ~60 B). The session
must still prove the leader's other processes after the leader's own pid was reaped
and forgotten, as when each had its own tuple.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from patrol.engine.ownership import Ownership

# the leader starts a member of its session and prints its pid, then sleeps
LEADER = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
          " print(p.pid, flush=True); time.sleep(60)")


def test_the_session_shares_the_leaders_record_and_outlives_it() -> None:
    leader = subprocess.Popen([sys.executable, "-c", LEADER], start_new_session=True, stdout=subprocess.PIPE,
                              text=True)
    member = 0
    try:
        assert leader.stdout is not None
        member = int(leader.stdout.readline())
        owned = Ownership()
        start = owned.spawned("app/web", leader.pid)
        assert start is not None
        assert owned._sessions[leader.pid] is owned._pids[leader.pid]  # one tuple, not two
        assert owned.owner(member) == "app/web"  # a member of its session

        owned.exited(leader.pid)  # the leader's pid record goes; its session stays
        assert leader.pid not in owned._pids and owned._sessions[leader.pid] == ("app/web", start)
        assert owned.owner(member) == "app/web"  # proven by the session now
    finally:
        if member:
            os.kill(member, signal.SIGKILL)
        leader.kill()
        leader.wait()
