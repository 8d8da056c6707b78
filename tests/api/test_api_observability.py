"""What an operator needs beside the original's keys: state, restarts, backoff, uptime,
CPU% and resident memory of the process (from ``/proc``)."""

from __future__ import annotations

import os
import sys

from patrol.testing import wait_for

ORIGINAL_APP_KEYS = {"instance-id", "name", "pid", "started", "lastseen", "disabled", "restart", "run-once",
                     "history", "keyvalue", "secret", "cas"}


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_cpu_and_memory_of_a_busy_and_an_idle_process(patrol, tmp_path):
    busy = tmp_path / "busy"
    busy.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'while True: pass'\n")
    busy.chmod(0o755)
    p = patrol.start(patrol.config(apps={"busy": patrol.app(1, binary="busy"), "idle": patrol.app(1)}))
    wait_for(lambda: all(p.app(a).get("pid") for a in ("busy", "idle")), 10, "both apps running")

    def sampled():  # figures are refreshed at most once a second; a loaded machine gives less
        apps = p.status()["apps"]
        busy, idle = apps["busy"].get("cpu-percent", 0), apps["idle"].get("cpu-percent", 100)
        return apps if busy > 20 and idle < 10 and apps["busy"].get("uptime", 0) >= 1 else None

    apps = wait_for(sampled, 15, "the busy app's CPU to show, and the idle one's not")
    busy_entry, idle = apps["busy"], apps["idle"]
    assert busy_entry["cpu-percent"] <= 100 * (os.cpu_count() or 1)
    for entry in (busy_entry, idle):
        assert abs(entry["rss-bytes"] - rss_of(entry["pid"])) < 2 * 1024 * 1024
        assert entry["state"] == "running" and entry["uptime"] > 0
        assert set(entry) - ORIGINAL_APP_KEYS <= {"state", "restarts", "uptime", "cpu-percent", "rss-bytes", "ready"}
        assert entry["ready"] is True  # no readiness probe: ready while it runs
    status, body = p.api_get(id="busy", group="app")
    assert status == 200 and body["cpu-percent"] > 20 and body["rss-bytes"] > 0


def test_a_crash_loop_shows_its_restarts_backoff_and_last_exit(patrol):
    app = patrol.app(1, env=["TESTAPP_EXIT=7"], **{"backoff-base": 30, "backoff-max": 30})
    p = patrol.start(patrol.config(apps={"loop": app}))
    entry = wait_for(lambda: p.app("loop").get("state") == "backoff" and p.app("loop"), 10, "the backoff")
    assert entry["backoff"] == 30 and entry["restarts"] >= 1
    assert entry["last-exit"] == "exit code 7" and entry["last-reason"] == "exited"
    assert "pid" not in entry and "uptime" not in entry and "cpu-percent" not in entry
    assert [r["exit-code"] for r in entry["history"]] == [7] * len(entry["history"])
