"""Start order and stop order (``depends-on``) with real apps and services under a real
``patrol run`` (docs/health.md): a dependent starts as soon as its condition holds and
shows why it waits until then; completions count; a dependency that is disabled keeps
its dependents visibly waiting; shutdown stops dependents first; reloads restart nothing
for a dependency change; services wait and are waited for."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from patrol.testing import PatrolFactory, PatrolProcess, free_port, wait_for

from tests.engine.test_health_probes import answers, events, web_app


def stamps(path: Path) -> list[float]:
    return [float(line.split()[0]) for line in path.read_text().splitlines()] if path.exists() else []


def entry(p: PatrolProcess, app_id: str) -> dict[str, Any]:
    return p.status()["apps"][app_id]


def test_a_client_starts_once_web_is_ready_and_waits_visibly_until_then(patrol: PatrolFactory,
                                                                        tmp_path: Path) -> None:
    port, log, starts, feed = free_port(), tmp_path / "answers", tmp_path / "client.starts", tmp_path / "events"
    period = 0.5
    # web listens once the test opens its gate (it slept 2 s: under load the Patrol start
    # took longer, web was ready before the first look, and the look failed)
    gate = tmp_path / "gate"
    web = web_app(patrol, port, f"WEB_GATE={gate}", f"WEB_LOG={log}",
                  readiness={"http": f"http://127.0.0.1:{port}/", "period": period})
    client = patrol.app(1, env=[f"TESTAPP_STARTLOG={starts}"], **{"depends-on": {"web": "ready"}})
    p = patrol.start(patrol.config(apps={"web": web, "client": client}), env={"PATROL_EVENTS_FILE": str(feed)})
    status, body = p.api(id="client", group="app")
    assert status == 200 and body["state"] == "waiting" and body["last-reason"] == "waiting for web: ready"
    assert not starts.exists() and not answers(log)  # web does not listen yet
    gate.touch()
    wait_for(lambda: stamps(starts), 15, "the client started")
    first_success = answers(log)[0][0]  # web's log holds successful answers only: the first is the probe's
    started = stamps(starts)[0]
    assert first_success <= started <= first_success + period + 0.5
    waiting = [e for e in events(feed) if e["event"] == "app.waiting"]
    assert waiting and waiting[0]["id"] == "client" and waiting[0]["reason"] == "waiting for web: ready"


MIGRATE = """#!/bin/sh
# a migration: runs a moment, then exits with the code in {code}
sleep 0.3
echo "$(date +%s.%N) exit $(cat '{code}')" >> '{log}'
exit "$(cat '{code}')"
"""


def migration(patrol: PatrolFactory, code: int) -> tuple[dict[str, Any], Path]:
    code_file, log = patrol.tmp_path / "code", patrol.tmp_path / "migrate.log"
    code_file.write_text(str(code))
    binary = patrol.tmp_path / "migrate"
    binary.write_text(MIGRATE.format(code=code_file, log=log))
    binary.chmod(0o755)
    return patrol.app(1, binary=str(binary), **{"backoff-base": 30, "backoff-max": 30}), log


def test_completed_successfully_waits_for_an_exit_0(patrol: PatrolFactory, tmp_path: Path) -> None:
    migrate, log = migration(patrol, 0)
    starts = tmp_path / "web.starts"
    web = patrol.app(1, env=[f"TESTAPP_STARTLOG={starts}"], **{"depends-on": {"migrate": "completed-successfully"}})
    p = patrol.start(patrol.config(apps={"migrate": migrate, "web": web}))
    wait_for(lambda: stamps(starts), 15, "web started")
    assert stamps(log) and stamps(log)[0] <= stamps(starts)[0]  # after the migration ended, not before
    assert entry(p, "migrate")["history"][0]["exit-code"] == 0 if "exit-code" in entry(p, "migrate")["history"][0] \
        else True


def test_completed_successfully_keeps_waiting_after_an_exit_1_and_says_why(patrol: PatrolFactory,
                                                                          tmp_path: Path) -> None:
    migrate, log = migration(patrol, 1)
    starts = tmp_path / "web.starts"
    web = patrol.app(1, env=[f"TESTAPP_STARTLOG={starts}"], **{"depends-on": {"migrate": "completed-successfully"}})
    p = patrol.start(patrol.config(apps={"migrate": migrate, "web": web}))
    reason = "waiting for migrate: completed-successfully (its last run ended with exit code 1)"
    wait_for(lambda: entry(p, "web").get("last-reason") == reason, 15, "web waiting, saying why")
    assert entry(p, "web")["state"] == "waiting" and not starts.exists()
    (tmp_path / "code").write_text("0")  # fixed: the next run succeeds
    p.api(id="migrate", group="app", toggle=1)  # enabling a backing-off app retries it at once
    wait_for(lambda: stamps(starts), 15, "web started after the migration succeeded")


STOPPER = """#!{python}
# runs until its stop signal; then logs "<name> begin <t>", takes 0.3 s, logs "<name> end <t>"
import os, signal, sys, time
name, out = os.environ["NAME"], os.environ["STOPLOG"]

def stop(*_):
    with open(out, "a") as f:
        f.write(f"{{name}} begin {{time.time()}}\\n")
    time.sleep(0.3)
    with open(out, "a") as f:
        f.write(f"{{name}} end {{time.time()}}\\n")
    os._exit(0)

signal.signal(signal.SIGUSR1, stop)
print(f"up {{name}}", flush=True)
while True:
    time.sleep(1)
"""


def test_shutdown_stops_dependents_before_their_dependencies(patrol: PatrolFactory, tmp_path: Path) -> None:
    binary, out = tmp_path / "stopper", tmp_path / "stops"
    binary.write_text(STOPPER.format(python=sys.executable))
    binary.chmod(0o755)

    def app(name: str, **keys: Any) -> dict[str, Any]:
        return patrol.app(1, binary=str(binary), env=[f"NAME={name}", f"STOPLOG={out}"], **keys)

    apps = {"db": app("db"), "web": app("web", **{"depends-on": {"db": "started"}}),
            "worker": app("worker", **{"depends-on": ["web"]}), "other": app("other")}
    p = patrol.start(patrol.config(apps=apps))
    for app_id in apps:
        wait_for(lambda: entry(p, app_id).get("pid"), 15, f"{app_id} running")
    wait_for(lambda: all(p.app_log_has(f"up {name}") for name in apps), 10, "every app's stop handler")
    assert p.terminate() == 0
    lines = [line.split() for line in out.read_text().splitlines()]
    at = {(name, what): float(t) for name, what, t in lines}
    assert at[("worker", "end")] <= at[("web", "begin")]
    assert at[("web", "end")] <= at[("db", "begin")]
    assert at[("other", "begin")] < at[("web", "begin")]  # independent: stopped at once, in parallel


def test_a_disabled_dependency_keeps_its_dependent_waiting_until_enabled(patrol: PatrolFactory) -> None:
    apps = {"db": patrol.app(1, disabled=True), "web": patrol.app(1, **{"depends-on": ["db"]})}
    p = patrol.start(patrol.config(apps=apps))
    wait_for(lambda: entry(p, "web").get("last-reason") == "waiting for db: ready (it is disabled)", 10,
             "web waiting for the disabled db")
    assert entry(p, "web")["state"] == "waiting"
    p.api(id="db", group="app", toggle=1)
    wait_for(lambda: entry(p, "web").get("pid"), 10, "web started once db runs")
    assert "last-reason" not in entry(p, "web")


FAKE_SERVICE = """#!/bin/sh
# a fake 'service' program: NAME ACTION
case "$2" in
    status) [ -e '{dir}'/"$1".running ] && exit 0; exit 3 ;;
    start|restart) touch '{dir}'/"$1".running ;;
    stop) rm -f '{dir}'/"$1".running ;;
esac
"""


def test_services_wait_for_apps_and_apps_for_services(patrol: PatrolFactory, tmp_path: Path) -> None:
    command = tmp_path / "fake-service"
    command.write_text(FAKE_SERVICE.format(dir=tmp_path))
    command.chmod(0o755)
    service = {"name": "Cache", "service": "cache", "management": "service", "service-command": str(command),
               "depends-on": {"app/db": "started"}, "readiness": {"exec": ["true"], "period": 0.1}}
    apps = {"db": patrol.app(1, disabled=True), "web": patrol.app(1, **{"depends-on": {"cache": "ready"}})}
    p = patrol.start(patrol.config(apps=apps, services={"cache": service}))
    cache = wait_for(lambda: (s := p.status()["service"]["cache"]).get("state") == "waiting" and s, 10,
                     "the service waiting")
    assert cache["last-reason"] == "waiting for db: started (it is disabled)"
    assert not (tmp_path / "cache.running").exists()
    wait_for(lambda: entry(p, "web").get("last-reason") == "waiting for cache: ready (it is waiting)", 10,
             "web waiting for the service")
    p.api(id="db", group="app", toggle=1)
    wait_for(lambda: p.status()["service"]["cache"].get("state") == "ready", 10, "the service started and ready")
    wait_for(lambda: entry(p, "web").get("pid"), 10, "web started once the service is ready")


def test_a_reload_applies_dependencies_without_restarting_unchanged_apps(patrol: PatrolFactory,
                                                                         tmp_path: Path) -> None:
    command = tmp_path / "fake-service"
    command.write_text(FAKE_SERVICE.format(dir=tmp_path))
    command.chmod(0o755)
    service = {"name": "Cache", "service": "cache", "management": "service", "service-command": str(command)}
    apps = {"db": patrol.app(1), "web": patrol.app(1), "blocker": patrol.app(1, disabled=True),
            "job": patrol.app(1, **{"depends-on": ["blocker"]})}
    p = patrol.start(patrol.config(apps=apps, services={"cache": service}))
    db, web = p.running_pid("db"), p.running_pid("web")
    wait_for(lambda: entry(p, "job").get("state") == "waiting", 10, "job waiting")
    wait_for(lambda: p.status()["service"]["cache"].get("state") == "running", 10, "the service running")
    p.config["apps"]["web"]["depends-on"] = {"db": "started"}  # added to a running app
    p.config["apps"]["job"]["depends-on"] = {"db": "ready"}  # changed: now it holds
    p.config["services"]["cache"]["depends-on"] = {"app/db": "started"}  # and to a running service
    p.write_config()
    status, report = p.request("POST", "/-/reload", {})
    assert status == 200 and report["changed"] == [] and "app web" in report["unchanged"]
    assert "service cache" in report["unchanged"]
    wait_for(lambda: entry(p, "job").get("pid"), 10, "job started on its new condition")
    assert entry(p, "web")["pid"] == web and entry(p, "db")["pid"] == db
    assert not entry(p, "web").get("history") and not entry(p, "db").get("history")


def test_a_dependency_that_gave_up_keeps_its_dependent_waiting_and_says_so(patrol: PatrolFactory) -> None:
    db = patrol.app(1, env=["TESTAPP_EXIT=1"], readiness={"exec": ["false"], "period": 0.1},
                    **{"backoff-base": 0.05, "start-limit": 2})
    p = patrol.start(patrol.config(apps={"db": db, "web": patrol.app(1, **{"depends-on": {"db": "ready"}})}))
    wait_for(lambda: entry(p, "db").get("state") == "given-up", 10, "db given up")
    web = wait_for(lambda: (e := entry(p, "web")).get("last-reason") == "waiting for db: ready (it is given up)"
                   and e, 10, "web's reason naming the give-up")
    assert web["state"] == "waiting" and not web.get("pid") and not web.get("history")
