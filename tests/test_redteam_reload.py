"""Red-team review of issue 12 (item 11): a reload that hangs on a file keeps Patrol
from ever exiting.

R1 (medium): **a reload whose config or token file cannot be read (a FIFO, a hung
network file system) leaves a thread blocked for good, and then SIGTERM never ends
Patrol.** The loader opens its inputs with a blocking ``open()``
(``patrol/config/access.py`` ``_token_file``, ``patrol/config/load.py``
``read_document``); a reload runs it through ``asyncio.to_thread`` with a 60 s
``wait_for`` (``patrol/supervisor.py`` ``reload_config``), which stops waiting but
cannot stop the thread. ``patrol run`` ends through ``asyncio.run`` (``patrol/cli.py``),
which joins the default executor's threads without a timeout (Python 3.11): Patrol
stops every app, logs "patrol stopped", and then hangs for ever, holding the state
file's lock, so a restart by the service manager is refused until it SIGKILLs it. Six
such reloads (the default executor's size on 2 cores) also make every later reload
time out, even once the file is fixed. A FIFO at the token file's path stalls
``patrol check`` and ``patrol run`` for ever as well (no timeout at all there).

Reproduction: ``http.auth.token-file`` set; replace the token file by a FIFO; SIGHUP
(or ``POST /-/reload``); SIGTERM: Patrol logs "patrol stopped" and never exits.

Suggested fix: open every file the config loader reads (the config itself, the token
file, any file it names) as the pid files are (``O_NONBLOCK``, regular files only,
bounded read: ``patrol/config/access.py``, ``patrol/config/load.py``); and run the
reload's loading in a daemon thread of its own (or a dedicated executor that is never
joined at exit; ``patrol/supervisor.py``), so a read that hangs regardless (NFS) can
never hold up Patrol's exit.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from patrol.testing import UNITTEST_ENV, wait_for


def _blocked_opening_a_fifo(pid: int) -> bool:
    """Is one of the process's threads waiting in open() for a FIFO's writer?"""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            if Path(f"/proc/{pid}/task/{tid}/wchan").read_text().strip() == "wait_for_partner":
                return True
        except OSError:
            continue
    return False


def test_a_reload_stuck_on_a_fifo_token_file_does_not_keep_patrol_from_exiting(patrol, tmp_path):
    token = "t" * 32
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    config = patrol.config(apps={"a": patrol.app(1)})
    config["http"]["auth"] = {"token-file": str(token_file)}
    p = patrol.start(config, env=UNITTEST_ENV, wait=False)
    p.headers = {"Authorization": f"Bearer {token}"}
    wait_for(p._up, 15, "patrol to serve")
    p.running_pid("a")
    token_file.unlink()
    os.mkfifo(token_file)
    try:
        os.kill(p.pid, signal.SIGHUP)
        wait_for(lambda: _blocked_opening_a_fifo(p.pid), 10, "the reload to open the token file")
        os.kill(p.pid, signal.SIGTERM)
        wait_for(lambda: "patrol stopped" in p.log(), 10, "Patrol to stop its apps")
        assert _exits_within(p, 10), "Patrol logged 'patrol stopped' but has not exited 10 s after SIGTERM (a reload thread " \
                       "is stuck opening the FIFO token file, and asyncio.run joins it for ever)"
    finally:
        try:  # release the stuck open() so nothing is left blocked
            os.close(os.open(token_file, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def _exits_within(p, seconds: float) -> bool:
    try:
        wait_for(lambda: p.proc.poll() is not None, seconds, "patrol to exit")
        return True
    except AssertionError:
        return False
