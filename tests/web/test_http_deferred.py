"""The HTTP transport binds its sockets at start and loads the web stack after the apps
were spawned (patrol/web/http_plugin.py): the lazy load must still happen, clients that
come early are served, and a web stack that fails to load is reported, not fatal to the apps.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

from patrol.testing import wait_for

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$")


def first(lines: list[str], found) -> int:
    return next(n for n, line in enumerate(lines) if found(line))


def event(line: str) -> str:
    return json.loads(line).get("event", "") if line.startswith("{") else ""


def test_the_web_stack_loads_after_the_apps_were_spawned_and_serves(patrol):
    p = patrol.start(patrol.config({"web": patrol.app()}), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert p.running_pid("web") > 0  # answered over HTTP: the deferred load happened
    lines = p.log().splitlines()
    spawned = first(lines, lambda line: event(line) == "spawned")
    web = first(lines, lambda line: (m := IMPORT_LINE.match(line)) is not None
                and m.group(1) in ("starlette", "uvicorn", "patrol.web.transport"))
    assert spawned < web, "the web stack was imported before the first app was spawned"


def test_a_web_stack_that_fails_to_load_is_reported_and_the_apps_run_on(patrol, tmp_path):
    broken = tmp_path / "broken" / "starlette"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("starlette is broken (a test)")\n')
    config = patrol.config({"web": patrol.app()})
    p = patrol.start(config, env={"PYTHONPATH": str(broken.parent)}, wait=False)

    def failure():
        assert p.proc.poll() is None, p.log()
        return next((r for r in p.log_records() if r.get("event") == "transport failed to start; running without it"),
                    None)

    # a whole Patrol start (patrol.start allows 15 s for one): 10 s ran out under load (-n 4)
    record = wait_for(failure, 30, message="the web stack's failure in the log")
    assert record["transport"] == "http" and "starlette is broken (a test)" in record["error"]
    wait_for(lambda: any(r.get("event") == "spawned" for r in p.log_records()), message="the app spawned")
    host, port = config["http"]["listen"].rsplit(":", 1)

    def refused() -> bool:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, message="the HTTP port closed, not left hanging")
    assert p.proc.poll() is None  # Patrol supervises on without HTTP


def test_a_web_stack_that_is_not_installed_fails_the_plugin_at_load_as_before(tmp_path):
    """Loading the web stack late must not hide that it is missing: ``patrol plugins`` (and
    so ``patrol check`` and strict mode) still name the failed plugin and the package."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['starlette'] = None  # as if not installed\n")
    env = {**{k: v for k, v in os.environ.items() if k != "PATROL_STRICT_PLUGINS"}, "PYTHONPATH": str(hide)}
    out = subprocess.run([sys.executable, "-m", "patrol", "plugins", "--json"], capture_output=True, text=True,
                         env=env, timeout=60, check=False)
    listing = json.loads(out.stdout)
    (failed,) = [f for f in listing["failed"] if f["name"] == "patrol.http"]
    assert "'starlette', which is not installed" in failed["error"]
    assert "patrol.http" not in {p["name"] for p in listing["loaded"]}
