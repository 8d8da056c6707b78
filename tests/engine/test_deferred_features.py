"""Features a daemon imports on first use still work when they arrive by a live reload.

``env-file`` (the parser of :mod:`patrol.util.dotenv`) and probes (the probe loop and its
targets) are imported by the first app that has them, not by every Patrol
(tests/cli/test_run_imports.py guards that a plain config never loads them). A reload
that brings the first such app must then load them and use them as a start-time config
does: the env file's values reach the child, a malformed one is a start failure naming
the file and line (the error class is imported where it is matched), and a readiness
probe makes its app ready.
"""

from __future__ import annotations

import os
import re

from patrol.testing import PatrolFactory, wait_for

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", re.MULTILINE)
DEFERRED = {"patrol.util.dotenv", "patrol.engine.probing", "patrol.engine.probe_target"}


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        entries = f.read().split(b"\0")
    return dict(e.decode().partition("=")[::2] for e in entries if b"=" in e)


def test_env_files_and_probes_brought_by_a_reload_work(patrol: PatrolFactory, tmp_path) -> None:
    p = patrol.start(patrol.config(apps={"plain": patrol.app()}), env={"PYTHONPROFILEIMPORTTIME": "1"})
    p.running_pid("plain")
    imported = wait_for(lambda: set(IMPORT_LINE.findall(p.log())) or None, message="import lines")
    assert "patrol.engine.supervisor" in imported and not imported & DEFERRED

    (tmp_path / "good.env").write_text('FROM_FILE="a value"\n')
    (tmp_path / "bad.env").write_text("GOOD=1\nnot an assignment\n")
    quiet = {"backoff-base": 30, "backoff-max": 30}
    p.config["apps"].update({
        "good": patrol.app(**{"env-file": "good.env"}),
        "bad": patrol.app(**quiet, **{"env-file": str(tmp_path / "bad.env")}),
        "probed": patrol.app(readiness={"exec": ["true"], "period": 0.1}),
    })
    p.write_config()
    status, body = p.request("POST", "/-/reload")
    assert status == 200, body

    pid = p.running_pid("good")
    env = wait_for(lambda: (e := environ(pid)).get("FROM_FILE") and e, 10, "the program itself (not its launcher)")
    assert env["FROM_FILE"] == "a value"
    reason = wait_for(lambda: p.app("bad").get("last-reason"), 10, "bad's start failure")
    assert reason == f'env-file {tmp_path}/bad.env line 2: must be KEY=VALUE (no "=" found)'
    entry = wait_for(lambda: (e := p.app("probed")).get("state") == "ready" and e, 15, "probed ready")
    assert entry["readiness"]["ok"] is True
    assert "Traceback" not in p.log()
    assert DEFERRED <= set(IMPORT_LINE.findall(p.log()))
    os.kill(p.pid, 0)  # still running
