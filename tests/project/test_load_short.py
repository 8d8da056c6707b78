"""The short version of bench/load.py: apps that crash every second among sleeping ones,
while clients read /status/ and ping over UDP and HTTP without pause."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_short_load_no_missed_restart_no_leaked_descriptor():
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--sleepers", "30", "--crashers", "10",
         "--ping-apps", "2", "--duration", "4", "--json"],
        capture_output=True, text=True, timeout=180,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["missed_restarts"] == 0, report
    assert report["restarts"] >= 10, report  # the crashers kept coming back during the load
    assert report["fds_after"] <= report["fds_before"] + 2, report
    assert report["patrol_alive"] and report["exit_code"] == 0 and report["left_running"] == 0, report
    assert report["status_requests"] > 0 and report["udp_pings"] > 0 and report["http_pings"] > 0, report
    assert report["client_errors"] == 0, report
    assert run.returncode == 0, run.stderr
