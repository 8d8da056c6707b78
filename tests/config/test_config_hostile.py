"""Hostile and surprising configs: refused cleanly (F17), paths meaning what they say (P3).

Black-box against ``patrol check`` and a real ``patrol run``: what an operator sees.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from patrol.testing import PatrolProcess, wait_for

NESTED_RULE = "nested too deeply: arrays and objects (TOML: arrays and tables) may be nested at most 64 levels deep"
APP_TOML = """[apps.a]
keepalive = 1
name = "A"
binary = "testapp"
working-directory = "{wd}"
log-directory = "logs"
pid-path = "a.pid"
"""


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "patrol", "check", str(path)], capture_output=True, text=True,
                          timeout=60)


def deep_toml(wd: Path, depth: int, inline_tables: bool = False) -> str:
    value = "{b = " * depth + "1" + "}" * depth if inline_tables else "[" * depth + "]" * depth
    return APP_TOML.format(wd=wd) + f"x = {value}\n"


def deep_json(wd: Path, depth: int) -> str:
    app = {"keepalive": 1, "name": "A", "binary": "testapp", "working-directory": str(wd), "log-directory": "logs",
           "pid-path": "a.pid"}
    return json.dumps({"apps": {"a": app}})[:-3] + ", \"x\": " + "[" * depth + "]" * depth + "}}}"


# -- F17: deeply nested configs ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,make", [
    ("deep.toml", lambda wd: deep_toml(wd, 5000)),  # tomllib itself recurses
    ("tables.toml", lambda wd: deep_toml(wd, 400, inline_tables=True)),
    ("shallow-but-too-deep.toml", lambda wd: deep_toml(wd, 100)),
    ("deep.json", lambda wd: deep_json(wd, 900)),  # decodes, then breaks the walks over it
    ("deeper.json", lambda wd: deep_json(wd, 100_000)),
])
def test_check_refuses_deep_nesting_naming_the_file_and_the_rule(tmp_path, name, make):
    path = tmp_path / name
    path.write_text(make(tmp_path))
    done = check(path)
    assert done.returncode == 2, done
    assert done.stderr.strip() == f"{path}: {NESTED_RULE}", done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_nesting_at_the_limit_is_fine(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text(deep_toml(tmp_path, 61))  # + the document, apps and the app: 64 levels
    (tmp_path / "testapp").write_text("#!/bin/sh\n")
    (tmp_path / "testapp").chmod(0o755)
    done = check(path)
    assert done.returncode == 0, done.stderr


def start_toml(patrol, text: str) -> PatrolProcess:
    """A real ``patrol run`` on a TOML config (the fixture writes JSON configs only)."""
    config = patrol.config()
    process = PatrolProcess(patrol.tmp_path, config, patrol.marker, suffix=".toml")
    http, udp = config["http"]["listen"], config["udp"]["listen"]
    process.config_path.write_text(f'http = {{listen = "{http}"}}\nudp = {{listen = "{udp}"}}\n' + text)
    patrol.processes.append(process)
    return process.start()


def test_reload_and_sighup_refuse_a_deep_config_and_keep_running(patrol):
    p = start_toml(patrol, APP_TOML.format(wd=patrol.tmp_path) + "disabled = true\n")
    assert set(p.status()["apps"]) == {"a"}
    good = p.config_path.read_text()
    for depth, tables in ((5000, False), (400, True), (100, False)):
        p.config_path.write_text(good.split("[apps.a]")[0] + deep_toml(patrol.tmp_path, depth, tables))
        status, body = p.request("POST", "/-/reload")
        assert status == 400, (status, body)
        assert body == {"errors": [f"{p.config_path}: {NESTED_RULE}"]}
    refusals = p.log().count("reload refused")
    p.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: p.log().count("reload refused") > refusals, 10, "the SIGHUP reload to be refused")
    assert p.status()["apps"]["a"]["disabled"] is True  # still serving, the old config in force
    p.terminate()
    log = p.log()
    assert "Traceback" not in log and "never retrieved" not in log and "RecursionError" not in log, log


# -- P3: absolute paths are absolute ------------------------------------------------------------------------


def test_absolute_binary_log_directory_and_pid_path_are_used_as_given(patrol, tmp_path):
    """The original joined them under working-directory: ``/usr/bin/python3`` ran
    ``<wd>/usr/bin/python3``, and an absolute log directory landed inside the working
    directory (e.g. a web root)."""
    wd = tmp_path / "www"
    wd.mkdir()
    logs = tmp_path / "private-logs"
    pid = tmp_path / "run" / "app.pid"
    pid.parent.mkdir()
    app = patrol.app(2, **{"binary": str(patrol.testapp), "working-directory": str(wd),
                           "log-directory": str(logs), "pid-path": str(pid)})
    p = patrol.start(patrol.config(apps={"abs": app}))
    running = p.running_pid("abs")
    wait_for(lambda: pid.exists() and pid.read_text().strip() == str(running), 10, "the pid file at its absolute path")
    assert any(logs.rglob("*.stdout.log")), "the logs are not in the absolute log directory"
    assert not (wd / logs.relative_to("/")).exists() and list(wd.iterdir()) == []  # nothing under the working dir
    environ = Path(f"/proc/{running}/environ").read_bytes()
    assert f"PATROL_PID={pid}\0".encode() in environ
    status, page = p.request("GET", "/app/abs")
    assert status == 200 and f"{patrol.testapp}" in page and str(logs) in page
    p.terminate()


def test_check_warns_about_a_binary_that_is_missing_or_not_executable(tmp_path):
    (tmp_path / "script").write_text("#!/bin/sh\n")  # mode 0644: not executable
    (tmp_path / "dir").mkdir()
    (tmp_path / "good").write_text("#!/bin/sh\n")
    (tmp_path / "good").chmod(0o755)
    base = {"keepalive": 1, "name": "A", "working-directory": str(tmp_path), "log-directory": "logs",
            "pid-path": "a.pid"}
    apps = {"missing": {**base, "binary": "nope"}, "plain": {**base, "binary": "script"},
            "dir": {**base, "binary": "dir"}, "absolute": {**base, "binary": "/usr/bin/python3"},
            "good": {**base, "binary": "good"}, "outside": {**base, "binary": str(tmp_path / "dir" / "none")}}
    path = tmp_path / "patrol.json"
    path.write_text(json.dumps({"apps": apps}))
    done = check(path)
    assert done.returncode == 0, done.stderr  # warnings, not errors: it may be installed later
    warnings = sorted(done.stderr.splitlines())
    expect = sorted([
        f"warning: {path}: apps.missing.binary: {tmp_path}/nope does not exist: the app cannot start",
        f"warning: {path}: apps.plain.binary: {tmp_path}/script is not executable (chmod +x?): the app cannot start",
        f"warning: {path}: apps.dir.binary: {tmp_path}/dir is a directory, not a program: the app cannot start",
        f"warning: {path}: apps.outside.binary: {tmp_path}/dir/none does not exist: the app cannot start",
    ])
    if not os.access("/usr/bin/python3", os.X_OK):  # pragma: no cover - Debian has it
        pytest.skip("no /usr/bin/python3 on this machine")
    assert warnings == expect, done.stderr


@pytest.mark.parametrize("wd,log_directory", [("/srv/app", "/var/log"), ("/", "etc"), ("/srv/app", "/")])
def test_a_log_directory_of_the_system_is_warned_about(wd, log_directory):
    """The log browser serves every file below an app's log directory: with absolute
    log directories honoured, "/var/log" is easy to write and would publish syslog."""
    from patrol.config import Methods, parse_config
    from patrol.plugin.loader import Plugins

    plugins = Plugins(strict=True)
    app = {"keepalive": 1, "name": "A", "binary": "b", "working-directory": wd, "log-directory": log_directory,
           "pid-path": "a.pid"}
    _, warnings = parse_config({"apps": {"a": app}}, Methods(plugins.keepalives, plugins.services))
    assert len(warnings) == 1 and "apps.a.log-directory: is /" in warnings[0] and "log browser" in warnings[0]
