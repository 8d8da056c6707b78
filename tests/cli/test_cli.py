"""The ``patrol`` command end to end: run, check, plugins, version, help, logs."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from patrol import __version__
from patrol.testing import PatrolProcess, free_port, pid_alive, pids_with_marker, wait_for

ROOT = Path(__file__).resolve().parents[2]


def patrol_cmd(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "patrol", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=60)


def test_version_and_help():
    assert patrol_cmd("--version").stdout.splitlines()[0].startswith(f"patrol {__version__} (plugin API ")
    out = patrol_cmd("--help")
    assert out.returncode == 0
    for command in ("run", "check", "plugins"):
        assert command in out.stdout
    assert patrol_cmd().returncode == 2  # no command: usage


def test_example_config_runs_respawns_within_a_second_and_stops_cleanly(tmp_path):
    """The README's first command, on a copy of examples/ with free ports."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("logs", "plugins"))
    config_path = tmp_path / "examples" / "config.json"
    config = json.loads(config_path.read_text())
    config["http"]["listen"] = f"127.0.0.1:{free_port()}"
    config["udp"]["listen"] = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    marker = f"patrol-example-{uuid.uuid4()}"  # unique across concurrent runs on one machine
    config["apps"]["hello"]["env"] = [f"MARK={marker}"]
    p = PatrolProcess(tmp_path / "examples", config, marker)
    p.config_path = config_path
    try:
        p.start()
        pid = wait_for(lambda: p.app("hello").get("pid"), 10, "the example app")
        assert "hello: started" in wait_for(lambda: _logs(tmp_path), 5)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        new = wait_for(lambda: p.app("hello").get("pid") not in (None, pid) and p.app("hello")["pid"], 5)
        assert time.monotonic() - killed_at < 1.0
        assert pid_alive(new)
        assert p.terminate() == 0
        assert pids_with_marker(marker) == []  # the app and its `sleep` are gone
    finally:
        p.cleanup()


def _logs(tmp_path):
    return "".join(f.read_text() for f in (tmp_path / "examples" / "logs").rglob("*.log"))


def test_check_accepts_the_example_and_the_seed_config(tmp_path):
    out = patrol_cmd("check", str(ROOT / "examples" / "config.json"))
    assert out.returncode == 0 and "ok (1 apps, 0 services)" in out.stdout


def test_check_prints_every_error_at_once_and_exits_1(tmp_path):
    bad = {
        "apps": {
            "web": {"keepalive": 1, "name": "Web", "binary": "a", "working-directory": "srv/web",
                    "log-directory": "logs", "pid-path": "a.pid", "tick": 3},
            "-bad": {"keepalive": 9, "name": "", "binary": "x/..", "working-directory": "/srv",
                     "log-directory": "logs"},
        },
        "ping-timeout": "soon",
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(bad))
    out = patrol_cmd("check", str(path))
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert f'{path}: apps.web.working-directory: must be an absolute path (got "srv/web")' in lines
    assert any("ping-timeout" in line for line in lines)
    assert any("apps.-bad" in line or 'apps["-bad"]' in line for line in lines)
    assert any("keepalive" in line and "9" in line for line in lines)
    assert any(line.startswith("warning:") and "tick" in line for line in lines)  # unknown key
    assert "Traceback" not in out.stderr


def test_check_unreadable_file_exits_2(tmp_path):
    assert patrol_cmd("check", str(tmp_path / "missing.json")).returncode == 2
    (tmp_path / "bad.json").write_text("{nope")
    assert patrol_cmd("check", str(tmp_path / "bad.json")).returncode == 2


def test_missing_plugin_names_the_package_to_install(tmp_path):
    config = {"apps": {"u": {"keepalive": 4, "name": "U", "binary": "a", "working-directory": "/srv",
                             "log-directory": "logs"}}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = patrol_cmd("check", str(path), env={"PATROL_DISABLE_PLUGINS": "keepalive_udp"})
    assert out.returncode == 1
    assert "keepalive 4 needs: pip install patrol-keepalive-udp" in out.stderr
    assert patrol_cmd("check", str(path)).returncode == 0  # installed: fine


def test_run_logs_json_lines_when_not_a_tty(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(1)}))
    wait_for(lambda: p.app("t").get("pid"), 10)
    assert p.terminate() == 0
    records = [json.loads(line) for line in p.log().splitlines() if line.startswith("{")]
    events = {r["event"] for r in records}
    assert {"patrol started", "spawned", "patrol stopped"} <= events
    assert all("level" in r and "timestamp" in r for r in records)


def test_third_party_tcp_keepalive_plugin_from_a_config(patrol, tmp_path):
    """examples/plugins/keepalive_tcp is pip-installed by requirements-dev.txt."""
    port = free_port()
    server = tmp_path / "server.py"
    server.write_text(
        "import os, socket, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(300)\n"
    )
    wrapper = tmp_path / "tcpapp"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{server}"\n')
    wrapper.chmod(0o755)
    app = patrol.app("tcp", binary="tcpapp", **{"tcp-port": port})
    app.pop("pid-path")
    p = patrol.start(patrol.config(apps={"web": app}))
    pid = wait_for(lambda: p.app("web").get("started") and p.app("web").get("pid"), 10, "tcp app alive")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: p.app("web").get("history") and p.app("web").get("pid") not in (None, pid), 10)
