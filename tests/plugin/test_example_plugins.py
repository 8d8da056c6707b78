"""The third-party plugins of examples/plugins, written against ``from patrol import ...``
alone, work in a real ``patrol run``: a service backend and a trigger observer (the
keepalive, ``tcp``, is driven by tests/cli/test_cli.py). requirements-dev.txt installs
them as a user would, from their own distributions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from patrol.testing import PatrolFactory, item_errors, load_item, wait_for

FAKE_SYSTEMCTL = """#!/bin/sh
# a stand-in for systemctl: the unit runs while its file exists; every call is recorded
echo "$@" >> "{calls}"
[ "$1" = --user ] && shift
case "$1" in
  start) touch "{units}/$2" ;;
  stop) rm -f "{units}/$2" ;;
  is-active) [ -e "{units}/$3" ] || exit 3 ;;
esac
"""


def fake_systemctl(tmp_path: Path) -> tuple[Path, Path, Path]:
    units, calls = tmp_path / "units", tmp_path / "calls"
    units.mkdir()
    program = tmp_path / "systemctl"
    program.write_text(FAKE_SYSTEMCTL.format(calls=calls, units=units))
    program.chmod(0o755)
    return program, units, calls


def test_the_systemctl_backend_starts_watches_and_stops_a_unit(patrol: PatrolFactory, tmp_path: Path) -> None:
    program, units, calls = fake_systemctl(tmp_path)
    service = {"name": "Web", "service": "nginx", "management": "systemctl", "systemctl": str(program)}
    p = patrol.start(patrol.config(services={"web": service}))
    wait_for(lambda: p.status()["service"]["web"].get("state") == "running", 10, "the unit started")
    assert (units / "nginx").exists()
    assert "start nginx" in calls.read_text() and "is-active --quiet nginx" in calls.read_text()
    status, _ = p.api(id="web", group="service", toggle=2)  # disable: the backend stops it
    assert status == 200
    wait_for(lambda: not (units / "nginx").exists(), 10, "the unit stopped")
    wait_for(lambda: p.status()["service"]["web"].get("state") == "disabled", 10, "the service disabled")


def test_the_systemctl_backend_checks_its_options_through_the_kernel() -> None:
    service = load_item("services", {"name": "U", "service": "app", "management": "systemctl",
                                     "systemctl-user": True}, "u")
    assert service.options == {"systemctl": "systemctl", "systemctl-user": True}
    errors = item_errors("services", {"name": "W", "service": "app", "management": "systemctl",
                                      "systemctl": "/usr/bin/../bin/systemctl"}, "w")
    assert any("systemctl" in e and "clean path" in e for e in errors), errors


def events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_jsonl_trigger_writes_the_life_cycle_and_never_a_secret(patrol: PatrolFactory, tmp_path: Path) -> None:
    feed = tmp_path / "events.jsonl"
    apps = {"plain": patrol.app(1), "vault": patrol.app(1, secret="s3cret-value", keyvalue={"k": "hidden"})}
    p = patrol.start(patrol.config(apps=apps), env={"PATROL_EVENTS_FILE": str(feed)})
    first = p.running_pid("plain", ready=True)
    p.api(id="plain", group="app", toggle=3)  # restart: closed, then started again
    wait_for(lambda: p.running_pid("plain") != first, 10, "the restart")
    wait_for(lambda: [e for e in events(feed) if e["event"] == "app.closed" and e.get("id") == "plain"], 10,
             "the closed event")
    names = [e["event"] for e in events(feed)]
    assert names[0] == "patrol.started" and "patrol.tick" not in names
    started = [e for e in events(feed) if e["event"] == "app.started" and e["id"] == "plain"]
    assert started[0]["pid"] == first and started[0]["state"] == "running"
    closed = next(e for e in events(feed) if e["event"] == "app.closed" and e["id"] == "plain")
    assert closed["ended"]["reason"] == "restart"
    assert "s3cret-value" not in feed.read_text() and "hidden" not in feed.read_text()


def test_the_file_probe_makes_an_app_ready_while_its_marker_exists(patrol: PatrolFactory, tmp_path: Path) -> None:
    """The third-party probe of docs/writing-plugins.md, pip-installed from its own
    distribution: its shorthand, its option relative to the working directory."""
    readiness = {"file": "ready.flag", "period": 0.1, "failure-threshold": 1}
    p = patrol.start(patrol.config(apps={"web": patrol.app(1, **{"working-directory": str(tmp_path),
                                                                  "readiness": readiness})}))
    entry = wait_for(lambda: (e := p.app("web")).get("pid") and e, 10, "web running")
    assert entry["state"] == "running" and entry["ready"] is False  # no marker yet: running, not ready
    (tmp_path / "ready.flag").touch()
    entry = wait_for(lambda: (e := p.app("web")).get("state") == "ready" and e, 10, "web ready")
    assert entry["readiness"]["message"] == f"{tmp_path / 'ready.flag'} exists"
    (tmp_path / "ready.flag").unlink()
    wait_for(lambda: p.app("web").get("state") == "unready", 10, "web unready once the marker is gone")
