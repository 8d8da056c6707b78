"""Files the config loader reads that cannot be read: refused at once, naming the file (R1).

Found by the red-team review of issue 12: the loader opened the config and
``http.auth.token-file`` with a blocking ``open()``. A FIFO at either path stalled
``patrol check`` and ``patrol run`` for ever; on a reload, the reading thread stayed
blocked past the reload's deadline, and ``asyncio.run`` joined it at exit, so Patrol
logged "patrol stopped" and never exited (holding the state file's lock). Now every file
the loader reads is opened as pid files are (non-blocking, regular files only, a bounded
read), and a reload reads in a daemon thread nothing waits for at exit
(``tests/util/test_daemonthread.py`` hangs one for real).

Black-box against ``patrol check``, ``patrol run`` and a running Patrol's reload.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from patrol.testing import UNITTEST_ENV, wait_for

FIFO = "not a regular file (a FIFO)"


def patrol_cmd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``patrol ARGS``; a hang fails the test (TimeoutExpired) instead of stalling the suite."""
    return subprocess.run([sys.executable, "-m", "patrol", *args], capture_output=True, text=True, timeout=30,
                          cwd=cwd)


def release(fifo: Path) -> None:
    """Open a FIFO's write end once: whatever still waits in ``open()`` on it goes on."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_fifo_config_is_refused_at_once_naming_the_file(tmp_path, command):
    config = tmp_path / "patrol.json"
    os.mkfifo(config)
    try:
        result = patrol_cmd(command, str(config), cwd=tmp_path)
    finally:
        release(config)
    assert result.returncode == 2, result
    assert f"{config}: cannot read the file: {FIFO}" in result.stderr, result.stderr


def test_check_refuses_a_fifo_token_file_naming_the_key_and_the_file(patrol, tmp_path):
    token_file = tmp_path / "token"
    os.mkfifo(token_file)
    config = patrol.config(apps={"a": patrol.app(1)})
    config["http"]["auth"] = {"token-file": str(token_file)}
    path = tmp_path / "patrol.json"
    path.write_text(json.dumps(config))
    try:
        result = patrol_cmd("check", str(path), cwd=tmp_path)
    finally:
        release(token_file)
    assert result.returncode == 1, result
    assert f'http.auth.token-file: cannot read "{token_file}": {FIFO}' in result.stderr, result.stderr


@pytest.mark.parametrize("where", ["token-file", "config"])
def test_a_reload_meeting_a_fifo_is_refused_at_once_and_patrol_still_exits(patrol, tmp_path, where):
    """R1's reproduction: replace the token file (or the config) by a FIFO, reload,
    SIGTERM. The reload must be refused naming the file, the old config must stay,
    a fixed file must reload again, and Patrol must exit."""
    token = "t" * 32
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    config = patrol.config(apps={"a": patrol.app(1)})
    config["http"]["auth"] = {"token-file": str(token_file)}
    p = patrol.start(config, env=UNITTEST_ENV, wait=False)
    p.headers = {"Authorization": f"Bearer {token}"}
    wait_for(p._up, 15, "patrol to serve")
    pid = p.running_pid("a")
    fifo = token_file if where == "token-file" else p.config_path
    saved = fifo.read_text()
    fifo.unlink()
    os.mkfifo(fifo)
    try:
        refusals = p.log().count("reload refused")
        os.kill(p.pid, signal.SIGHUP)
        wait_for(lambda: p.log().count("reload refused") > refusals, 10, "the SIGHUP reload to be refused")
        status, body = p.request("POST", "/-/reload")
        named = f'http.auth.token-file: cannot read "{fifo}"' if where == "token-file" else f"{fifo}: cannot read the file"
        assert status == 400 and any(named in e and FIFO in e for e in body["errors"]), (status, body)
        assert p.running_pid("a") == pid  # the running config stays
        fifo.unlink()
        fifo.write_text(saved)
        status, body = p.request("POST", "/-/reload")
        assert status == 200 and "errors" not in body, (status, body)  # nothing was left stuck
        os.kill(p.pid, signal.SIGTERM)
        wait_for(lambda: p.proc.poll() is not None, 10, "Patrol to exit after SIGTERM")
        assert "patrol stopped" in p.log()
    finally:
        release(fifo)
