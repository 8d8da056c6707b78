"""Readiness and liveness of real apps, through a real ``patrol run`` and the first-party
probes (docs/health.md): running is not ready, a failing readiness makes a run unready
without a restart, a failing liveness restarts it, a hanging ``exec`` probe is killed
at its timeout while the loop goes on, and a ``log`` probe sees the app's own lines."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from patrol.testing import PatrolFactory, free_port, pid_alive, wait_for

WEB = """#!{python}
# A web app: sleeps WEB_DELAY s (and waits until WEB_GATE exists), then answers GETs with
# 200, or 500 while WEB_FAIL_IF exists; every answer is logged to WEB_LOG as "<time> <pid> <status>".
import http.server, os, sys, time
time.sleep(float(os.environ.get("WEB_DELAY", "0")))
while os.environ.get("WEB_GATE") and not os.path.exists(os.environ["WEB_GATE"]):
    time.sleep(0.02)
fail, log = os.environ.get("WEB_FAIL_IF", ""), os.environ.get("WEB_LOG", "")

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if fail and os.path.exists(fail) else 200
        if log:
            with open(log, "a") as f:
                f.write(f"{{time.time()}} {{os.getpid()}} {{code}}\\n")
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

class Server(http.server.HTTPServer):
    allow_reuse_address = True

server = Server(("127.0.0.1", int(os.environ["WEB_PORT"])), Handler)
print("listening", flush=True)
server.serve_forever()
"""


def script(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text.format(python=sys.executable))
    path.chmod(0o755)
    return str(path)


def web_app(patrol: PatrolFactory, port: int, *env: str, **keys: Any) -> dict[str, Any]:
    binary = script(patrol.tmp_path, "web", WEB)
    return patrol.app(1, binary=binary, env=[f"WEB_PORT={port}", *env], **keys)


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def answers(log: Path) -> list[tuple[float, int, int]]:
    if not log.exists():
        return []
    return [(float(t), int(pid), int(code)) for t, pid, code in (line.split() for line in log.read_text().splitlines())]


def test_a_failing_readiness_makes_a_ready_app_unready_without_a_restart(patrol: PatrolFactory, tmp_path: Path) -> None:
    port, flag, feed = free_port(), tmp_path / "fail", tmp_path / "events.jsonl"
    readiness = {"http": f"http://127.0.0.1:{port}/health", "period": 0.1, "failure-threshold": 2}
    p = patrol.start(patrol.config(apps={"web": web_app(patrol, port, f"WEB_FAIL_IF={flag}", readiness=readiness)}),
                     env={"PATROL_EVENTS_FILE": str(feed)})
    entry = wait_for(lambda: (e := p.app("web")).get("state") == "ready" and e, 15, "web ready")
    pid = entry["pid"]
    assert entry["ready"] is True and entry["readiness"]["ok"] is True and entry["readiness"]["message"] == "HTTP 200"
    flag.touch()
    entry = wait_for(lambda: (e := p.app("web")).get("state") == "unready" and e, 15, "web unready")
    assert entry["ready"] is False and entry["pid"] == pid and not entry.get("history")
    assert entry["readiness"] == {"ok": False, "message": "HTTP 500 (passes: 200-399)", "at": entry["readiness"]["at"]}
    flag.unlink()
    entry = wait_for(lambda: (e := p.app("web")).get("state") == "ready" and e, 15, "web ready again")
    assert entry["pid"] == pid and entry.get("restarts", 0) == 0
    names = [(e["event"], e.get("reason")) for e in events(feed) if e.get("id") == "web"
             and e["event"] in ("app.ready", "app.unready")]
    assert names == [("app.ready", None), ("app.unready", "HTTP 500 (passes: 200-399)"), ("app.ready", None)]


def test_a_failing_liveness_restarts_the_app_after_failure_threshold_failures(patrol: PatrolFactory,
                                                                              tmp_path: Path) -> None:
    port, flag, log, feed = free_port(), tmp_path / "fail", tmp_path / "answers", tmp_path / "events.jsonl"
    liveness = {"http": {"url": f"http://127.0.0.1:{port}/"}, "period": 0.1, "failure-threshold": 3}
    app = web_app(patrol, port, f"WEB_FAIL_IF={flag}", f"WEB_LOG={log}", liveness=liveness,
                  **{"stop-signal": "SIGTERM"})
    p = patrol.start(patrol.config(apps={"web": app}), env={"PATROL_EVENTS_FILE": str(feed)})
    first = p.running_pid("web")
    wait_for(lambda: any(code == 200 for _, _, code in answers(log)), 15, "web answering")
    assert p.app("web")["state"] == "running" and p.app("web")["liveness"]["ok"] is True  # no readiness: running
    flag.touch()
    second = p.running_pid("web", other_than=first)
    record = p.app("web")["history"][-1]
    assert record["pid"] == first and record["reason"] == "liveness: HTTP 500 (passes: 200-399)"
    failed = [code for _, pid, code in answers(log) if pid == first and code == 500]
    assert len(failed) >= 3  # never before failure-threshold failures in a row
    failed_events = [e for e in events(feed) if e["event"] == "app.liveness_failed"]
    assert failed_events[0]["error"] == "HTTP 500 (passes: 200-399)" and failed_events[0]["pid"] == first
    assert second != first and pid_alive(second) and not pid_alive(first)


HANG = """#!/bin/sh
# an exec probe that hangs: its pid and its child's go to {pids}
sleep 30 &
echo "$$ $!" >> '{pids}'
wait
"""


def test_a_hanging_exec_probe_is_killed_at_its_timeout_while_patrol_goes_on(patrol: PatrolFactory,
                                                                            tmp_path: Path) -> None:
    pids = tmp_path / "probe.pids"
    hang = tmp_path / "hang"
    hang.write_text(HANG.format(pids=pids))
    hang.chmod(0o755)
    apps = {"checked": patrol.app(1, readiness={"exec": [str(hang)], "timeout": 0.5, "period": 0.2}),
            "victim": patrol.app(1)}
    p = patrol.start(patrol.config(apps=apps))
    wait_for(lambda: pids.exists() and pids.read_text().strip(), 15, "the first hanging check")
    victim = p.running_pid("victim", ready=True)
    started = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    p.running_pid("victim", other_than=victim, timeout=10)
    assert time.monotonic() - started < 30  # respawned while a check hangs: the loop never waited on it
    entry = wait_for(lambda: (e := p.app("checked")).get("readiness") and e, 10, "a failed check")
    assert entry["state"] == "running" and entry["ready"] is False
    assert entry["readiness"]["message"] in ("timed out after 0.5 s", "killed after 0.5 s")
    first = [int(pid) for pid in pids.read_text().splitlines()[0].split()]
    wait_for(lambda: not any(pid_alive(pid) for pid in first), 10, "the hung check and its child gone")


LOGGER = """#!{python}
# prints "booting", then, once {flag} exists, "server ready on port 8080"
import os, time
print("booting", flush=True)
while not os.path.exists({flag!r}):
    time.sleep(0.02)
print("server ready on port 8080", flush=True)
time.sleep(300)
"""


def test_a_log_probe_makes_the_app_ready_when_its_line_appears(patrol: PatrolFactory, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    binary = tmp_path / "logger"
    binary.write_text(LOGGER.format(python=sys.executable, flag=str(flag)))
    binary.chmod(0o755)
    app = patrol.app(1, binary=str(binary), readiness={"log": {"pattern": r"ready on port \d+", "stream": "stdout"},
                                                       "period": 3600})
    p = patrol.start(patrol.config(apps={"app": app}))
    entry = wait_for(lambda: (e := p.app("app")).get("readiness") and e, 15, "the first check")
    assert entry["state"] == "running" and entry["ready"] is False
    assert entry["readiness"]["message"] == r"not seen yet: /ready on port \d+/"
    # the first check may come before the app's first line: wait for it (the probe hears a
    # line when the pipe is read, before the writer puts it in the file), then look again
    wait_for(lambda: p.app_log_has("booting"), 15, "the app's first line in its log")
    entry = p.app("app")
    assert entry["ready"] is False and entry["readiness"]["message"] == r"not seen yet: /ready on port \d+/"
    flag.touch()
    # the period is an hour: only the line itself can bring the check that passes
    entry = wait_for(lambda: (e := p.app("app")).get("ready") and e, 15, "the app ready")
    assert entry["state"] == "ready" and entry["readiness"]["message"] == "seen: server ready on port 8080"


def test_liveness_failures_count_toward_backoff_and_the_start_limit(patrol: PatrolFactory) -> None:
    # backoff-reset an hour: on a loaded machine a run can last past the default 1 s before
    # its probe fails, and a run that long is not a quick failure (the count starts over)
    app = patrol.app(1, liveness={"exec": ["false"], "period": 0.1, "failure-threshold": 1},
                     **{"backoff-base": 0.05, "backoff-reset": 3600, "start-limit": 2, "stop-signal": "SIGTERM"})
    p = patrol.start(patrol.config(apps={"t": app}))
    entry = wait_for(lambda: (e := p.app("t")).get("state") == "given-up" and e, 15, "given up")
    reasons = [record["reason"] for record in entry["history"]]
    assert len(reasons) == 2 and all(r.startswith("liveness: ") for r in reasons), reasons
    assert not entry.get("pid")
