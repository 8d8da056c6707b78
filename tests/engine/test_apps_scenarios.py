"""Black-box app scenarios of spec section 11 (24-28, 34) against a real ``patrol run``."""

import os
import signal
from datetime import datetime

import pytest

from patrol.testing import UNITTEST_ENV, pid_alive, wait_for

ORIGINAL_KEYS = {"instance-id", "pid", "started", "lastseen", "stopped"}


def history(p, app_id, n):
    return wait_for(lambda: len(p.app(app_id).get("history", [])) >= n and p.app(app_id)["history"], 10,
                    f"{n} history records of {app_id}")


def test_scenario_24_normal_exit_is_recorded_and_restarted(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(1)}))
    pid = p.running_pid("t", ready=True)
    os.kill(pid, signal.SIGHUP)  # testapp exits 0
    record = history(p, "t", 1)[0]
    assert record["pid"] == pid
    assert set(record) == ORIGINAL_KEYS, record  # exit code 0, no flags: nothing else
    for key in ("started", "lastseen", "stopped"):
        datetime.fromisoformat(record[key])  # RFC3339
    new = p.running_pid("t", other_than=pid, ready=True)  # a keepalive restarts it at once
    assert new != pid


def test_scenario_26_disable_sends_stop_signal_and_records_it(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(1)}))
    pid = p.running_pid("t", ready=True)
    status, body = p.api(id="t", group="app", toggle=2)
    assert status == 200
    record = history(p, "t", 1)[0]
    assert record["disabled"] is True and record["exit-code"] == 10 and "shutdown" not in record
    assert record["reason"] == "disabled"
    wait_for(lambda: not pid_alive(pid), 5, "the app process to be gone")
    entry = p.app("t")
    assert "started" not in entry and entry["disabled"] is True and entry["state"] == "disabled"


def test_scenario_27_log_files_in_the_original_layout(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(1)}))
    p.running_pid("t", ready=True)
    wait_for(lambda: p.app_log_has("stderr line"), 10, "the app's log lines")
    files = sorted(f for f in (p.workdir / "logs").rglob("*.log") if not f.is_symlink())
    names = {f.name.split(".", 1)[1] for f in files}
    assert names == {"stdout.log", "stderr.log"}
    now = datetime.now()
    months = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
              "october", "november", "december"]
    rel = files[0].relative_to(p.workdir / "logs").parts
    assert rel[:3] == (f"{now.year:04d}", months[now.month - 1], str(now.day))
    assert rel[3].split(".")[0].isdigit() and len(rel[3].split(".")[0]) >= 19  # Unix nanoseconds
    assert all(f.stat().st_size >= 2 for f in files)


def test_std_merge_writes_one_file(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(1, **{"std-merge": True})}))
    p.running_pid("t", ready=True)
    wait_for(lambda: p.app_log_has("stderr line") and p.app_log_has("started"), 10)
    files = [f for f in (p.workdir / "logs").rglob("*.log") if not f.is_symlink()]
    assert len(files) == 1 and files[0].name.endswith(".stdmerge.log")


def test_scenario_28_pid_app_reads_its_pid_file_and_records_one_instance(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(2)}))
    pid = p.running_pid("t", ready=True)
    assert int((p.workdir / "testapp.pid").read_text()) == pid
    os.kill(pid, signal.SIGHUP)
    record = history(p, "t", 1)[0]
    assert record["pid"] == pid and "started" in record and "stopped" in record and "shutdown" not in record
    new = p.running_pid("t", other_than=pid, ready=True)
    assert new != pid and len(p.app("t")["history"]) == 1  # no duplicate close of the old one


@pytest.mark.parametrize("keepalive", [1])
def test_scenario_34_run_once_with_pid_patrol(patrol, keepalive):
    p = patrol.start(patrol.config(apps={"t": patrol.app(keepalive)}), env=UNITTEST_ENV)
    pid = p.running_pid("t", ready=True)
    status, pre = p.api_get(id="t", group="app", toggle=4)
    assert status == 200 and pre["pid"] == pid and "run-once" not in pre  # pre-request snapshot
    assert p.app("t")["run-once"] is True
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "started" not in p.app("t") and p.app("t").get("disabled"), 10, "disabled after run-once")
    record = p.app("t")["history"][0]
    assert record["run-once"] is True and record["pid"] == pid and record["exit-code"] == 255
    assert record["exit-signal"] == "SIGKILL"
    status, _ = p.api_get(id="t", group="app", toggle=6)
    new = p.running_pid("t", ready=True)
    assert new != pid and p.app("t")["run-once"] is True
    p.kill()  # SIGKILL of Patrol: the app is in its own session and survives
    assert pid_alive(new)


def test_sigterm_stops_every_child_and_exits_zero(patrol):
    apps = {f"a{i}": patrol.app(1) for i in range(3)}
    apps["d"] = patrol.app(2, env=["TESTAPP_DAEMONIZE=1"])
    p = patrol.start(patrol.config(apps=apps))
    pids = [p.running_pid(a, ready=True) for a in apps]
    assert p.terminate() == 0
    assert not any(pid_alive(pid) for pid in pids)
    from patrol.testing import pids_with_marker

    assert pids_with_marker(patrol.marker) == []
