"""The ``patrol`` client commands against a live Patrol: output and exit codes.

Exit codes: 0 ok, 1 request refused, 2 usage, 3 Patrol unreachable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Iterator

import pytest

from patrol.testing import PatrolFactory, PatrolProcess, free_port, wait_for

SECRET = "open-sesame"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatrolProcess]:
    factory = PatrolFactory(tmp_path_factory.mktemp("client"))
    script = factory.tmp_path / "fake-service"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    apps = {
        "web": factory.app(1, name="Web Server"),
        "off": factory.app(1, disabled=True),
        "vault": factory.app(1, disabled=True, secret=SECRET),
        "pinger": factory.app(3),
    }
    services = {"db": {"management": 1, "service": "db", "name": "DB", "service-command": str(script)}}
    try:
        yield factory.start(factory.config(apps=apps, services=services, **{"ping-timeout": 180}))
    finally:
        factory.cleanup()


def patrol_cli(*args: str, live: PatrolProcess | None = None, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    if live is not None:
        full_env["PATROL_URL"] = f"http://{live.http}"
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "patrol", *args], capture_output=True, text=True,
                          env=full_env, timeout=30)


def test_status_table_lists_apps_and_services(live):
    wait_for(lambda: live.app("web").get("pid") and live.status()["service"]["db"].get("started"), 10,
             "web and db running")
    result = patrol_cli("status", live=live)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "GROUP", "STATE", "PID", "UPTIME", "RESTARTS", "CPU", "MEM", "INFO"]
    assert "\x1b[" not in result.stdout  # piped: no colours
    summary = lines.pop()  # the per-state counts, the most urgent first
    assert summary in ("3 running, 2 disabled", "1 waiting, 2 running, 2 disabled"), summary
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert [line.split()[0] for line in lines[1:]][-2:] == ["off", "vault"]  # problems first, disabled last
    assert set(rows) == {"web", "off", "vault", "pinger", "db"}
    assert rows["web"][1:4] == ["app", "running", str(live.app("web")["pid"])]
    assert rows["web"][4].count(":") == 2 and rows["web"][6].endswith("%") and rows["web"][7][-1] in "KMG"
    assert rows["off"][2] == "disabled" and rows["off"][3] == "-"
    assert rows["vault"][-1] == "secret"
    assert rows["db"][1:3] == ["service", "running"]


def test_status_of_one_item_and_json(live):
    result = patrol_cli("status", "WEB", live=live)  # one id: the detail view
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("● web - Web Server (app)\n")
    assert "Keepalive: pid-patrol" in result.stdout and "Last 10 log lines:" in result.stdout
    assert "testapp web started" in result.stdout and "stderr testapp web stderr line" in result.stdout
    result = patrol_cli("status", "db", "--json", live=live)
    body = json.loads(result.stdout)
    assert body["id"] == "db" and body["group"] == "service" and body["name"] == "DB"
    everything = json.loads(patrol_cli("status", "--json", live=live).stdout)
    assert set(everything["apps"]) == {"web", "off", "vault", "pinger"} and "db" in everything["service"]
    result = patrol_cli("status", "nosuch", live=live)
    assert result.returncode == 1 and "unknown app or service: nosuch" in result.stderr
    assert patrol_cli("status", "db", "--group", "app", live=live).returncode == 1


def test_where_patrol_is(live, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"HTTP": {"Listen": live.http}, "apps": {}}))
    assert patrol_cli("status", "--config", str(config)).returncode == 0
    toml = tmp_path / "c.toml"
    toml.write_text(f'[http]\nlisten = "{live.http}"\n')
    assert patrol_cli("status", "--config", str(toml)).returncode == 0
    assert patrol_cli("status", "--url", live.http).returncode == 0
    assert patrol_cli("status", env={"PATROL_HTTP": json.dumps([live.http])}).returncode == 0
    result = patrol_cli("status", "--config", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_unreachable_and_not_patrol_exit_3(live):
    result = patrol_cli("status", "--url", f"127.0.0.1:{free_port()}")
    assert result.returncode == 3 and "cannot reach Patrol at http://127.0.0.1:" in result.stderr
    result = patrol_cli("disable", "web", "--url", f"http://{live.http}/nothere")
    assert result.returncode == 3 and "is this Patrol's API?" in result.stderr


def test_usage_errors_exit_2():
    assert patrol_cli("enable").returncode == 2
    assert patrol_cli("status", "--group", "bogus").returncode == 2
    result = patrol_cli("ping", "--url", "127.0.0.1:1")
    assert result.returncode == 2 and "PATROL_ID" in result.stderr


def test_toggles(live):
    result = patrol_cli("enable", "off", "--no-wait", live=live)
    assert result.returncode == 0 and result.stdout.strip() == "off: enable requested (it was disabled)"
    pid = wait_for(lambda: live.app("off").get("pid"), 10, "the enabled app to run")
    result = patrol_cli("restart", "off", live=live)  # waits for the new instance
    new = live.app("off")["pid"]
    assert result.returncode == 0 and result.stdout == f"off: restarted (pid {new})\n" and new != pid
    assert patrol_cli("run-once", "off", live=live).returncode == 0
    assert live.app("off")["run-once"] is True
    assert patrol_cli("run-once", "off", "--off", live=live).returncode == 0
    assert "run-once" not in live.app("off")
    result = patrol_cli("stop", "off", live=live)
    assert result.returncode == 0 and result.stdout.startswith("off: stopped (exit code 10 after "), result.stdout  # the test app exits 10 on SIGUSR1
    assert live.app("off").get("state") == "disabled"
    result = patrol_cli("disable", "db", live=live, env={"PATROL_TIMEOUT": ""})  # a service found without --group
    assert result.returncode == 0 and result.stdout.startswith("db: stopped"), result
    result = patrol_cli("enable", "nosuch", live=live)
    assert result.returncode == 1 and result.stderr.strip() == "patrol: unknown app or service: nosuch"


def test_toggles_of_an_item_with_a_secret(live):
    result = patrol_cli("enable", "vault", live=live)
    assert result.returncode == 1 and "has a secret: nothing was changed" in result.stderr
    result = patrol_cli("enable", "vault", "--secret", "nope", live=live)
    assert result.returncode == 1 and "Secret Invalid" in result.stderr
    assert live.app("vault")["disabled"] is True
    result = patrol_cli("enable", "vault", live=live, env={"PATROL_SECRET": SECRET})
    assert result.returncode == 0 and "disabled" not in live.app("vault")
    assert patrol_cli("disable", "vault", "--secret", SECRET, live=live).returncode == 0


def test_history(live):
    wait_for(lambda: live.app("off").get("history"), 10, "history of 'off'")
    result = patrol_cli("history", "off", live=live)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["#", "INSTANCE", "PID", "STARTED", "STOPPED", "EXIT", "REASON", "FLAGS"]
    assert len(lines) - 1 == len(live.app("off")["history"])
    records = json.loads(patrol_cli("history", "off", "--json", live=live).stdout)
    assert records == live.app("off")["history"]
    result = patrol_cli("history", "pinger", live=live)
    assert result.returncode == 0 and "has no ended instances yet" in result.stdout


def test_ping_keeps_a_pinging_app_running(live):
    holder = subprocess.Popen(["sleep", "60"])
    try:
        result = patrol_cli("ping", "pinger", "--pid", str(holder.pid), live=live)
        assert result.returncode == 0 and result.stdout == ""
        assert live.app("pinger")["pid"] == holder.pid
        result = patrol_cli("ping", "--json", live=live, env={"PATROL_ID": "pinger"})
        assert result.returncode == 0 and json.loads(result.stdout)["pid"] == holder.pid
        assert patrol_cli("ping", "web", live=live).returncode == 1  # web is pid-patrol: Ping Not Supported
    finally:
        holder.kill()
        holder.wait()


def test_client_commands_import_no_framework(live):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "patrol", "status", "--url", live.http],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "urllib.request" in imported
    assert not imported & {"pluggy", "starlette", "uvicorn", "structlog", "asyncio"}, imported


def test_status_shows_readiness_why_not_ready_an_apps_status_line_and_why_it_waits(patrol: PatrolFactory):
    notifier = patrol.tmp_path / "notifier"
    notifier.write_text('#!/bin/sh\nsystemd-notify --ready --status="serving 3 sites"\nexec sleep 300\n')
    notifier.chmod(0o755)
    apps = {
        "ok": patrol.app(1, readiness={"exec": ["true"], "period": 0.2}),
        "probed": patrol.app(1, readiness={"exec": ["false"], "period": 0.2}),
        "waiter": patrol.app(1, **{"depends-on": {"probed": "ready"}}),
        "notified": patrol.app("notify", binary=str(notifier)),
    }
    p = patrol.start(patrol.config(apps=apps))
    wait_for(lambda: p.app("ok").get("ready") and p.app("probed").get("readiness")
             and p.app("notified").get("ready"), 15, "the first answers")
    result = patrol_cli("status", live=p)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert rows["ok"].split()[2] == "ready"
    assert rows["probed"].split()[2] == "running"
    assert rows["probed"].endswith(f"readiness: {p.app('probed')['readiness']['message']}")
    assert rows["waiter"].split()[2] == "waiting" and rows["waiter"].endswith("waiting for probed: ready")
    assert rows["notified"].split()[2] == "ready" and rows["notified"].endswith("serving 3 sites")
