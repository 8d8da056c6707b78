"""Faults: Patrol keeps supervising the other apps, reports the fault, and recovers."""

import json
import os
import shutil
import signal
import sqlite3


from patrol.testing import UNITTEST_ENV, pid_alive, pids_with_marker, wait_for


def test_log_directory_deleted_while_apps_run(patrol):
    p = patrol.start(patrol.config(apps={"a": patrol.app(1), "b": patrol.app(1, **{"log-directory": "blogs"})}))
    pid = p.running_pid("a")
    b = p.running_pid("b")
    shutil.rmtree(p.workdir / "logs")
    os.kill(pid, signal.SIGKILL)
    p.running_pid("a", other_than=pid)
    wait_for(lambda: list((p.workdir / "logs").rglob("*.stdout.log")), 10, "the log directory made again")
    assert p.app("b")["pid"] == b  # the other app was not touched


def test_pid_file_goes_bad_while_the_app_runs(patrol):
    p = patrol.start(patrol.config(apps={"d": patrol.app(2)}), env=UNITTEST_ENV)  # tick 2 s
    pid = p.running_pid("d")
    pidfile = p.workdir / "testapp.pid"
    pidfile.write_text("garbage")
    wait_for(lambda: any(r.get("event") == "fault" for r in p.log_records()), 10, "the fault in the log")
    assert p.app("d")["pid"] == pid and pid_alive(pid)  # kept, not duplicated
    assert len(pids_with_marker(patrol.marker)) == 2
    pidfile.write_text(f"{pid}\n")
    wait_for(lambda: any(r.get("event") == "fault cleared" for r in p.log_records()), 10)
    os.kill(pid, signal.SIGKILL)  # the pidfd still watches it
    p.running_pid("d", other_than=pid)


def test_state_file_locked_then_released(patrol):
    p = patrol.start(patrol.config(apps={"a": patrol.app(1, disabled=True)}))
    db_path = p.config_path.with_suffix(".state.db")
    wait_for(db_path.exists, 10)
    blocker = sqlite3.connect(str(db_path), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        status, _ = p.api(id="a", group="app", keyvalue={"during": "lock"})
        assert status == 200  # supervision and the API go on
        wait_for(lambda: any("cannot write the state file" in r.get("event", "") for r in p.log_records()), 10)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_for(lambda: any(r.get("event") == "the state file is writable again" for r in p.log_records()), 10)
    row = sqlite3.connect(str(db_path)).execute("SELECT state FROM item WHERE id = 'a'").fetchone()
    assert json.loads(row[0])["keyvalue"] == {"during": "lock"}


def test_an_app_with_500_children_is_stopped_completely(patrol):
    app = patrol.app(1, env=["TESTAPP_CHILDREN=500"], **{"stop-timeout": 1})
    p = patrol.start(patrol.config(apps={"many": app, "other": patrol.app(1)}))
    p.running_pid("many")
    family = wait_for(lambda: len(pids_with_marker(patrol.marker)) >= 502 and pids_with_marker(patrol.marker),
                      30, "500 children")
    assert p.status()["apps"]["other"]["pid"]  # the API answers meanwhile
    p.api(id="many", group="app", toggle=2)
    other = p.app("other")["pid"]
    wait_for(lambda: len(pids_with_marker(patrol.marker)) == 2, 15, "only Patrol and the other app left")
    assert set(pids_with_marker(patrol.marker)) == {p.pid, other}
    assert len(family) >= 502


def test_a_burst_of_1000_signals(patrol):
    p = patrol.start(patrol.config(apps={"a": patrol.app(1)}))
    pid = p.running_pid("a")
    burst = [signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGWINCH, signal.SIGCHLD, signal.SIGPIPE]
    for n in range(1000):
        os.kill(p.pid, burst[n % len(burst)])
    assert p.status()["apps"]["a"]["pid"] == pid  # alive, answering, nothing restarted
    assert pid_alive(pid) and p.proc.poll() is None
    wait_for(lambda: any(r.get("event") == "reloaded" for r in p.log_records()), 10, "a reload")
    reloads = [r for r in p.log_records() if r.get("event") == "reloaded"]
    assert len(reloads) <= 10  # 167 SIGHUPs coalesced into a few reloads
    assert p.terminate() == 0
