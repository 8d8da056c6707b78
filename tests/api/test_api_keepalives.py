"""Spec section 11, scenarios 29-33: ping keepalives and adoption against a real daemon.

Unit-test mode (tick 2 s, ping-timeout 3 s, so a startup grace of 6 s), as the
original's testserver. Apps keep themselves alive with nothing but the environment
Patrol gives them (``PATROL_ID``, ``PATROL_HTTP`` / ``PATROL_UDP``); one is started by
hand before Patrol, as if it had outlived an earlier Patrol, and must be adopted, not
duplicated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from patrol.engine.ownership import started_for
from patrol.testing import UNITTEST_ENV, PatrolFactory, PatrolProcess, pid_alive, wait_for

NANO = "2006-01-02T15:04:05.999999999Z07:00"
PING_TIMEOUT, TICK = 3, 2  # unit-test mode
TRANSPORTS = {"http": 3, "udp": 4}
FAST = {"TESTAPP_PING_DELAY": "0.1", "TESTAPP_PING_EVERY": "0.3", "TESTAPP_PRINT_EVERY": "0.2"}


def by_hand(patrol: PatrolFactory, config: dict[str, Any], app_id: str, **env: str) -> subprocess.Popen[bytes]:
    """Start the app's program the way Patrol would, but without Patrol."""
    app = config["apps"][app_id]
    full = {
        **os.environ,
        "PATROL_ID": app_id,
        "PATROL_KEEPALIVE": str(app["keepalive"]),
        "PATROL_HTTP": json.dumps([config["http"]["listen"]]),
        "PATROL_UDP": json.dumps([config["udp"]["listen"]]),
        "PATROL_PID": str(patrol.tmp_path / app["pid-path"]),
        "PATROL_TEST_MARKER": patrol.marker,
        **env,
    }
    with open(patrol.tmp_path / f"{app_id}.by-hand.log", "ab") as log:
        return subprocess.Popen([str(patrol.testapp)], cwd=patrol.tmp_path, env=full, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def app_env(**extra: str) -> list[str]:
    return [f"{k}={v}" for k, v in {**FAST, **extra}.items()]


def entry_when(p: PatrolProcess, app_id: str, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        entry = p.app(app_id)
        return entry if predicate(entry) else None

    return wait_for(check, timeout, what)


def when(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def outlive_patrol(p: PatrolProcess, apps: dict[int, Path]) -> None:
    """SIGKILL Patrol; its apps (pid -> log directory), in their own sessions and
    without a death signal, go on printing. With Patrol gone, what they print waits in
    their output pipe: the test reads it there, as a restarted Patrol would."""
    p.kill()
    for pid in apps:
        fd = os.open(f"/proc/{pid}/fd/1", os.O_RDONLY | os.O_NONBLOCK)
        held = bytearray()

        def printing(fd: int = fd, held: bytearray = held) -> bool:
            try:
                held.extend(os.read(fd, 65536))
            except BlockingIOError:
                pass
            return held.count(b"line ") > 2

        try:
            wait_for(printing, 5, "the app to keep printing")
        finally:
            os.close(fd)
        assert pid_alive(pid)
        os.kill(pid, signal.SIGKILL)


def ping_script(directory: Path) -> Path:
    """A shell-script app that keeps itself alive with ``patrol ping`` (http keepalive)."""
    path = directory / "pinger.sh"
    path.write_text(f"#!/bin/sh\nwhile :; do {sys.executable} -m patrol ping || exit 1; sleep 0.3; done\n")
    path.chmod(0o755)
    return path


def test_scenarios_29_to_32_ping_keepalives_adoption_expiry_and_run_once(patrol):
    """Both transports side by side in one Patrol, so the startup grace is waited for once."""
    apps, manual, starts = {}, {}, {}
    for kind, number in TRANSPORTS.items():
        starts[kind] = patrol.tmp_path / f"adopt-{kind}.starts"
        env = {"TESTAPP_TOGGLE": "4", "TESTAPP_STARTLOG": str(starts[kind])}
        apps[f"adopt-{kind}"] = patrol.app(number, env=app_env(**env), **{"log-directory": f"logs-adopt-{kind}"})
        apps[f"fresh-{kind}"] = patrol.app(number, env=app_env())
        apps[f"daemon-{kind}"] = patrol.app(number, env=app_env(TESTAPP_DAEMONIZE="1"),
                                            **{"log-directory": f"logs-daemon-{kind}"})
        manual[kind] = env
    apps["script"] = patrol.app(3, binary=ping_script(patrol.tmp_path).name)
    config = patrol.config(apps=apps, **{"json-timestamp": NANO})
    manual = {kind: by_hand(patrol, config, f"adopt-{kind}", **FAST, **env) for kind, env in manual.items()}
    p = patrol.start(config, env=UNITTEST_ENV)

    # 31/32: apps that were already running are adopted; their pings ask for run-once
    for kind, proc in manual.items():
        entry = entry_when(p, f"adopt-{kind}", lambda e, pid=proc.pid: e.get("pid") == pid, 5, f"adoption of {kind}")
        assert entry["started"] and entry["run-once"] is True and entry["state"] == "running"

    # The grace (2 x ping-timeout) is over when Patrol starts the apps nobody started...
    fresh = {kind: entry_when(p, f"fresh-{kind}", lambda e: e.get("lastseen"), 2 * PING_TIMEOUT + TICK + 3,
                              f"fresh-{kind} pinging") for kind in TRANSPORTS}
    started = when(p.status()["started"])
    assert all(when(entry["started"]) - started >= 2 * PING_TIMEOUT - 0.1 for entry in fresh.values())
    # ... and the adopted ones were not started a second time.
    for kind, proc in manual.items():
        assert starts[kind].read_text().count("\n") == 1 and p.app(f"adopt-{kind}")["pid"] == proc.pid

    # 29/30: an app that stops pinging is closed at ping-timeout and started again
    for entry in fresh.values():
        os.kill(entry["pid"], signal.SIGINT)  # the test app stops pinging
    for kind in TRANSPORTS:  # meanwhile
        daemon_hands_over_its_pid(p, f"daemon-{kind}", patrol.tmp_path / f"logs-daemon-{kind}")
    pings_keep_apps_alive(p, ["script", *(f"adopt-{kind}" for kind in TRANSPORTS)])
    for kind, entry in fresh.items():
        old = entry["pid"]
        new = entry_when(p, f"fresh-{kind}", lambda e, old=old: e.get("pid") not in (None, old), PING_TIMEOUT + TICK,
                         f"a new instance of fresh-{kind} after the pings stopped")
        record = new["history"][-1]
        assert record["pid"] == old and record["reason"] == "ping expired" and "exit-code" not in record
        assert PING_TIMEOUT - 0.1 <= when(record["stopped"]) - when(record["lastseen"]) <= PING_TIMEOUT + 1
        wait_for(lambda old=old: not pid_alive(old), 5, "Patrol to stop the silent process")

    # 31/32: the adopted app dies -> closed at once; run-once then disables it
    for kind, proc in manual.items():
        proc.kill()
        proc.wait()
        entry = entry_when(p, f"adopt-{kind}", lambda e: "started" not in e, 2, f"adopt-{kind}'s death seen")
        assert entry["disabled"] is True
        record = entry["history"][-1]
        assert record["pid"] == proc.pid and record["run-once"] is True and record["started"]
        status, _ = p.api_get(id=f"adopt-{kind}", group="app", toggle=6)  # enable + run once
        assert status == 200
    survivors = {}
    for kind, proc in manual.items():
        entry = entry_when(p, f"adopt-{kind}", lambda e, pid=proc.pid: e.get("lastseen") and e.get("pid") != pid, 7,
                           f"Patrol to start adopt-{kind} again")
        assert entry["run-once"] is True and starts[kind].read_text().count("\n") == 2
        survivors[entry["pid"]] = patrol.tmp_path / f"logs-adopt-{kind}"
    outlive_patrol(p, survivors)


def pings_keep_apps_alive(p: PatrolProcess, names: list[str]) -> None:
    """Apps stay one instance for longer than ping-timeout, only because they ping."""
    first = {name: entry_when(p, name, lambda e: e.get("lastseen"), 5, f"{name} pinging") for name in names}
    for name, entry in first.items():
        since = when(entry["started"])
        later = entry_when(p, name, lambda e, t=since: when(e["lastseen"]) - t > PING_TIMEOUT + 0.5,
                           PING_TIMEOUT + 2, f"{name} alive past ping-timeout")
        assert later["instance-id"] == entry["instance-id"] and "history" not in later
        assert later["pid"] == entry["pid"] and pid_alive(later["pid"])


def daemon_hands_over_its_pid(p: PatrolProcess, app_id: str, log_dir: Path) -> None:
    """The launcher exits 0 and its daemon pings: same instance, the daemon's pid (10.4)."""
    entry = entry_when(p, app_id, lambda e: e.get("lastseen"), 5, f"{app_id} pinging")
    pid = entry["pid"]
    assert "history" not in entry and pid_alive(pid)
    logs = "".join(f.read_text() for f in log_dir.rglob("*.stdout.log"))
    assert f"started, pid {pid}," in logs  # the pid that pings is the daemon, not the launcher
    p.api(id=app_id, group="app", toggle=2)  # Patrol may signal it: its environment says it is the app's
    entry = entry_when(p, app_id, lambda e: e.get("history"), 5, f"{app_id} stopped by disable")
    assert entry["history"][-1]["pid"] == pid and entry["history"][-1]["reason"] == "disabled"
    assert len(entry["history"]) == 1 and entry["state"] == "disabled"
    wait_for(lambda: not pid_alive(pid), 5, "the daemon to exit")


def test_scenario_33_pid_app_adoption_and_run_once(patrol):
    config = patrol.config(apps={"pidapp": patrol.app(2, env=app_env())})
    pid_file = patrol.tmp_path / "testapp.pid"
    manual = by_hand(patrol, config, "pidapp", **FAST)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() == str(manual.pid), 5, "the pid file")
    p = patrol.start(config, env=UNITTEST_ENV)
    entry_when(p, "pidapp", lambda e: e.get("pid") == manual.pid, 5, "the running app to be adopted")

    status, body = p.api_get(id="pidapp", group="app", toggle=4)
    assert status == 200 and body["started"] and body["pid"] == manual.pid and "run-once" not in body

    manual.kill()
    manual.wait()
    entry = entry_when(p, "pidapp", lambda e: "started" not in e, 5, "the adopted app's death to be seen")
    assert entry["disabled"] is True
    record = entry["history"][-1]
    assert record["pid"] == manual.pid and record["run-once"] is True

    p.api_get(id="pidapp", group="app", toggle=6)
    entry = entry_when(p, "pidapp", lambda e: e.get("pid") not in (None, manual.pid), 7, "a new instance")
    assert entry["run-once"] is True
    outlive_patrol(p, {entry["pid"]: patrol.tmp_path / "logs"})


def test_restored_ping_instances_must_ping_again_and_pids_keep_their_trust(patrol):
    """After a Patrol restart (state file), an instance a ping created is adopted again:
    it has the startup grace to ping, and a pid only a ping named is still never signalled."""
    config = patrol.config(apps={name: patrol.app(3) for name in ("owned", "foreign", "silent")},
                           **{"json-timestamp": NANO})
    env = {**os.environ, "PATROL_TEST_MARKER": patrol.marker}
    owned = subprocess.Popen(["sleep", "300"], env={**env, "PATROL_ID": "owned"})  # as if started for it
    foreign, silent = (subprocess.Popen(["sleep", "300"], env=env) for _ in range(2))
    wait_for(lambda: started_for(owned.pid, "owned"), 5, "the sleeper's environment")
    p = patrol.start(config, env=UNITTEST_ENV)
    for name, proc in (("owned", owned), ("foreign", foreign), ("silent", silent)):
        assert p.api(id=name, group="app", ping=True, pid=proc.pid)[0] == 200
    before = p.status()["apps"]
    p.kill()

    p = patrol.start(config, env=UNITTEST_ENV)
    restarted = when(p.status()["started"])
    for name in ("owned", "foreign", "silent"):
        assert p.app(name)["instance-id"] == before[name]["instance-id"]
    p.api(id="foreign", group="app", toggle=2)
    p.api(id="owned", group="app", toggle=2)
    entry = entry_when(p, "owned", lambda e: e.get("history"), 5, "the owned process stopped by disable")
    assert entry["history"][-1]["reason"] == "disabled" and owned.wait(5) == -signal.SIGUSR1
    assert foreign.poll() is None  # never signalled: only a ping named it
    entry = entry_when(p, "silent", lambda e: e.get("history"), 2 * PING_TIMEOUT + 2, "the silent one to expire")
    record = entry["history"][-1]
    assert record["reason"] == "ping expired" and record["pid"] == silent.pid and silent.poll() is None
    assert when(record["stopped"]) - restarted >= 2 * PING_TIMEOUT - 0.1
    for proc in (foreign, silent):
        proc.kill()
        proc.wait()
