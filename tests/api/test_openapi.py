"""The OpenAPI document is valid, served, and true: real answers of a live Patrol match it.

A Patrol with apps of every keepalive, services, secrets and history records carrying
every optional key answers requests of every kind (HTTP and UDP, good and refused);
each answer is validated against the schema the document gives for its path, method
and status. Keys seen are collected per schema: a documented key that never shows up
is either listed below with the reason, or the scenario misses a case (or the
document describes something Patrol does not send).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Iterator

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from openapi_spec_validator import validate as validate_openapi

from patrol.api import openapi
from patrol.api.wire import FIELDS, LIMITS, MAX_BODY, QUERY_FIELDS
from patrol.testing import PatrolFactory, PatrolProcess, strict_json, wait_for

SECRET = "open-sesame"
#: documented keys no scenario here can show, and why
NOT_EXERCISED = {
    ("*", "shutdown"): "true only while Patrol shuts down, after its transports have stopped answering",
    ("Service*", "restart"): "cleared as soon as Patrol acts on it: the restart command starts at once",
    ("*Answer", "state-file"): "only while the state file refuses writes (tests/engine/test_state_file.py checks "
                               "those answers against the document)",
}

#: documented answers no scenario here can provoke, and why
NOT_PROVOKED = {
    ("/api/logs", "GET", 503): "needs a log directory that hangs (a hung disk)",
    ("/api/logs", "POST", 503): "needs a log directory that hangs (a hung disk)",
}
FAKE_SERVICE = """#!/bin/sh
# a fake 'service' program: NAME ACTION; 'broken' never starts
dir='{dir}'
case "$2" in
    status) [ -e "$dir/$1.running" ] && exit 0; exit 3 ;;
    start|restart) [ "$1" = broken ] && exit 1; touch "$dir/$1.running" ;;
    stop) rm -f "$dir/$1.running" ;;
esac
"""


def check(schema: dict[str, Any], body: Any, where: str) -> None:
    error = best_match(Draft202012Validator(openapi.narrowed(schema, body)).iter_errors(body))
    assert error is None, (f"{where}: the answer does not match the OpenAPI document: "
                           f"{'/'.join(map(str, error.absolute_path))}: {error.message}\n{json.dumps(body)[:2000]}")


class Recorder:
    """Sends requests, validates every answer, and remembers which keys each schema showed."""

    def __init__(self, p: PatrolProcess) -> None:
        self.p = p
        self.seen: dict[str, set[str]] = {}
        self.statuses: set[tuple[str, str, int]] = set()

    def http(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, Any]:
        host, _, port = self.p.http.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            status, payload, ctype = resp.status, resp.read(), resp.getheader("content-type", "")
        finally:
            conn.close()
        route = path.split("?")[0]
        route = "/status/" if route.startswith("/status/") else route
        schema = openapi.response_schema(route, method, status)
        assert schema is not None, f"{method} {path}: status {status} is not documented: {payload[:300]!r}"
        self.statuses.add((route, method, status))
        if status in (301, 308):
            return status, None
        if ctype.startswith(("text/plain", "text/event-stream")):  # /metrics, /events: documented as text
            content = openapi.document()["paths"][route][method.lower()]["responses"][str(status)]["content"]
            assert ctype.split(";")[0] in {media.split(";")[0] for media in content}, (path, ctype)
            return status, payload.decode()
        assert ctype == "application/json; charset=utf-8", (method, path, ctype)
        body_json = strict_json(payload)
        check(schema, body_json, f"{method} {path} -> {status}")
        self.collect(_schema_name(schema), body_json)
        return status, body_json

    def api(self, **request: Any) -> dict[str, Any]:
        status, body = self.http("POST", "/api/", json.dumps(request).encode())
        assert status == 200, (request, body)
        return body

    def udp(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = self.p.udp_request(request, timeout=5)
        assert answer is not None, f"no UDP answer to {request}"
        check(openapi.schema("UdpAnswer"), answer, f"UDP {request}")
        self.collect("UdpAnswer", answer)
        return answer

    def status(self) -> dict[str, Any]:
        return self.http("GET", "/status/")[1]

    def collect(self, name: str, body: Any) -> None:
        if name == "Answer" and "items" in body:
            name = "SetAnswer"
        elif name in ("Answer", "UdpAnswer"):
            name = ("App" if body["group"] == "app" else "Service") + name
        if not isinstance(body, dict):
            return
        self.seen.setdefault(name, set()).update(body)
        if name == "SetAnswer":
            for entry in body["items"].values():
                self.collect("AppStatus", entry)
        if name == "Status":
            for entry in body["apps"].values():
                self.collect("AppStatus", entry)
            for entry in body["service"].values():
                self.collect("ServiceStatus", entry)
        for record in body.get("history", []):
            self.collect("AppRecord" if name.startswith("App") else "ServiceRecord", record)


def _schema_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref", "")
    return ref.rsplit("/", 1)[1] if ref else "?"


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes that stand in for pinging apps (Patrol only records their pids)."""
    procs = [subprocess.Popen(["sleep", "300"]) for _ in range(4)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def live_config(patrol: PatrolFactory, tmp_path: Path) -> dict[str, Any]:
    service_command = tmp_path / "fake-service"
    service_command.write_text(FAKE_SERVICE.format(dir=tmp_path))
    service_command.chmod(0o755)
    apps = {
        "pidpatrol": patrol.app(1, keyvalue={"from": "config"}),
        "pidapp": patrol.app(2),
        "web": patrol.app(3),
        "udp": patrol.app(4),
        "lazy": patrol.app(3),
        "crash": patrol.app(1, env=["TESTAPP_EXIT=3"], **{"backoff-base": 60, "backoff-max": 60}),
        "vault": patrol.app(1, secret=SECRET),
        "flags": patrol.app(1, args=["--an-argument"]),
        "off": patrol.app(1, disabled=True),
        "stale": patrol.app(2, disabled=True),  # its pid file names Patrol's parent: a fault
        # readiness and liveness answers, and an app's own status line (sd_notify STATUS=)
        "probed": patrol.app(1, readiness={"exec": ["true"], "period": 0.2},
                             liveness={"exec": ["true"], "period": 0.2}),
        "notified": patrol.app("notify", binary=str(notifier(tmp_path))),
    }
    apps["pool"] = patrol.app(1, instances=2)  # a set of instances: items pool-0, pool-1
    for app_id, app in apps.items():
        app["pid-path"] = f"{app_id}.pid"
    (tmp_path / "stale.pid").write_text(f"{os.getpid()}\n")
    service = {"management": "service", "service-command": str(service_command), "stop-on-shutdown": True}
    services = {
        "db": {**service, "name": "DB", "service": "db"},
        "watched": {**service, "name": "Watched", "service": "watched", "readiness": {"exec": ["true"], "period": 0.2}},
        "locked": {**service, "name": "Locked", "service": "locked", "secret": SECRET},
        "broken": {**service, "name": "Broken", "service": "broken"},
    }
    return patrol.config(apps=apps, services=services, **{"ping-timeout": 180, "tick-every": 5, "history": 5})


def notifier(directory: Path) -> Path:
    """An sd_notify daemon: a status line, then ready."""
    script = directory / "notifier"
    script.write_text('#!/bin/sh\nsystemd-notify --ready --status="serving requests"\nexec sleep 300\n')
    script.chmod(0o755)
    return script


def exercise(r: Recorder, pids: list[int]) -> None:
    """Requests of every kind, good and refused, over both transports."""
    p = r.p
    r.api(id="pool", group="app")  # the set
    wait_for(lambda: {"readiness", "liveness"} <= set(r.status()["apps"]["probed"])
             and "status-text" in r.status()["apps"]["notified"] and "readiness" in r.status()["service"]["watched"],
             15, "the probes' first answers and the notify app's status line")
    for app_id in ("web", "udp", "lazy", "crash", "vault", "flags", "off", "pidpatrol", "pidapp", "stale", "probed",
                   "notified", "pool-1"):
        r.api(id=app_id, group="app")
        r.api(id=app_id, group="app", secret=SECRET)
        r.http("GET", f"/api/?id={app_id}&group=app&history")
        r.udp({"id": app_id, "group": "apps", "secret": SECRET})
    for service_id in ("db", "locked", "broken", "watched"):
        r.api(id=service_id, group="service", secret=SECRET)
        r.api(id=service_id, group="Services")
        r.udp({"id": service_id, "group": "service", "secret": SECRET})
    r.api(id="web", group="app", ping=True, pid=pids[0])
    r.api(id="web", group="app", ping=True)
    r.udp({"id": "udp", "group": "app", "ping": True, "pid": pids[1]})
    r.api(id="vault", group="app", secret=SECRET, keyvalue={"token": 1})
    r.api(id="pidpatrol", group="app", cas=1)  # a stale cas: cas-invalid
    r.udp({"id": "pidpatrol", "group": "app", "cas": 1})
    r.status()
    # refused, every way
    for body in (b"{", b"[1]", b'{"toggle": 300}', b'{"pingg": true}', b'{"group": "x"}',
                 b'{"id": "nope", "group": "app"}', b'{"id": "db", "group": "service", "ping": true}',
                 b'{"id": "vault", "group": "app", "secret": "wrong"}', b"\xff\xfe", b"NaN"):
        status, _ = r.http("POST", "/api/", body)
        assert status == 400, body
    assert r.http("POST", "/api/", b"x" * (MAX_BODY + 1))[0] == 413
    assert r.http("GET", "/api/?id=web&id=web&toggle=x")[0] == 400
    exercise_logs(r)
    refused_by_every_operation(r)
    metrics_and_events(r)
    assert r.http("GET", "/api?id=web")[0] == 301 and r.http("POST", "/api")[0] == 308
    assert r.http("GET", "/status")[0] == 301 and r.http("POST", "/status")[0] == 308
    assert r.http("GET", "/status/anything/below")[0] == 200
    assert r.http("GET", "/openapi.json")[1] == openapi.document()
    assert p.udp_request(None, raw=b'{"toggle": 300}', timeout=0.3) is None  # refused: silence


def exercise_logs(r: Recorder) -> None:
    """``/api/logs``: both streams, one stream and its cursor, a secret, and refusals."""
    status, both = r.http("GET", "/api/logs?id=pidpatrol&lines=5")
    assert status == 200 and both["stream"] == "both" and set(both["cursors"]) == {"stdout", "stderr"}
    status, one = r.http("POST", "/api/logs", json.dumps({"id": "pidpatrol", "stream": "stdout", "lines": 1}).encode())
    assert status == 200 and len(one["lines"]) == 1
    request = {"id": "pidpatrol", "group": "app", "stream": "stdout", "cursor": one["cursor"]}
    assert r.http("POST", "/api/logs", json.dumps(request).encode())[0] == 200
    assert r.http("POST", "/api/logs", b'{"id": "vault"}')[0] == 403
    assert r.http("POST", "/api/logs", json.dumps({"id": "vault", "secret": SECRET}).encode())[0] == 200
    assert r.http("POST", "/api/logs", b'{"id": "nope"}')[0] == 404
    assert r.http("GET", "/api/logs?id=nope")[0] == 404
    for body in (b'{"id": "web", "lines": -1}', b'{"id": "web", "stream": "x"}', b'{"idd": 1}', b"{"):
        assert r.http("POST", "/api/logs", body)[0] == 400, body
    assert r.http("GET", "/api/logs?id=web&secret=x")[0] == 400  # never a secret in a URL
    assert r.http("POST", "/api/logs", b"x" * (MAX_BODY + 1))[0] == 413


def make_history(r: Recorder, p: PatrolProcess, fake_dir: Path) -> None:
    """Records with every optional key: signals, run-once, disable, restart, key/values."""
    pid = p.running_pid("flags", ready=True)
    r.api(id="flags", group="app", keyvalue={"k": "v"}, toggle=4)  # run once: disabled when it ends
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: r.status()["apps"]["flags"].get("disabled"), 10, "flags disabled after its run-once")
    r.api(id="flags", group="app", toggle=6)  # enabled and run-once: shows run-once
    pid = p.running_pid("pidpatrol", ready=True)
    r.api(id="pidpatrol", group="app", toggle=3)  # restart: a record with restart
    p.running_pid("pidpatrol", other_than=pid, ready=True)
    r.api(id="pidpatrol", group="app", toggle=2)  # disable: a record with disabled and a reason
    wait_for(lambda: r.status()["apps"]["pidpatrol"].get("state") == "disabled", 10, "pidpatrol disabled")
    r.api(id="pidpatrol", group="app", toggle=1)
    r.api(id="lazy", group="app", toggle=3)  # not spawned yet (ping grace): restart stays true

    def db(n: int, **expect: Any) -> Any:
        entry = r.status()["service"]["db"]
        return len(entry.get("history", [])) >= n and all(entry.get(k) == v for k, v in expect.items())

    wait_for(lambda: db(0, state="running"), 15, "the db service running")
    r.api(id="db", group="service", keyvalue={"k": "v"}, toggle=4)  # run once
    r.udp({"id": "db", "group": "service"})
    r.status()
    (fake_dir / "db.running").unlink()  # the service dies: closed, and disabled (run once)
    r.api(id="db", group="service", toggle=4)  # a toggle makes Patrol look now (this one changes nothing)
    wait_for(lambda: db(1, disabled=True), 15, "db closed after its run-once")
    r.udp({"id": "db", "group": "service"})
    r.api(id="db", group="service", toggle=1)
    wait_for(lambda: db(1, state="running", restarts=1), 15, "db started again")
    r.api(id="db", group="service", toggle=3)
    wait_for(lambda: db(2, state="running"), 15, "db restarted")
    r.api(id="db", group="service", toggle=2)
    wait_for(lambda: db(3, state="disabled"), 15, "db stopped")
    r.api(id="db", group="service", toggle=1)
    wait_for(lambda: db(3, state="running"), 15, "db running again")
    wait_for(lambda: r.status()["apps"]["crash"].get("state") == "backoff", 15, "crash to back off")
    wait_for(lambda: r.status()["service"]["broken"].get("state") == "backoff", 15, "broken to back off")


def metrics_and_events(r: Recorder) -> None:
    """``/metrics`` and ``/events``: each documented answer (503: every stream taken)."""
    assert "patrol_item_up" in r.http("GET", "/metrics")[1]
    assert "retry: " in r.http("GET", "/events?follow=0&backlog=5")[1]
    status, body = r.http("GET", "/events?group=nope")
    assert status == 400 and body["errors"][0].startswith("group:")
    host, _, port = r.p.http.rpartition(":")
    streams = []
    try:
        for _ in range(64):  # MAX_SUBSCRIBERS, each holding its stream open
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", "/events?heartbeat=300")
            assert conn.getresponse().status == 200
            streams.append(conn)
        status, body = r.http("GET", "/events")
        assert status == 503 and "Too many event streams" in body["errors"][0]
    finally:
        for conn in streams:
            conn.close()


def refused_by_every_operation(r: Recorder) -> None:
    """Each documented 403 and 405, by the document: a browser from another site, a wrong method."""
    for path, operations in openapi.document()["paths"].items():
        for method, operation in operations.items():
            codes = operation["responses"]
            if "403" in codes:
                assert r.http(method.upper(), path, b"{}", {"Sec-Fetch-Site": "cross-site"})[0] == 403
                assert r.http(method.upper(), path, b"{}", {"Origin": "http://evil.example"})[0] == 403
            if "405" in codes:
                assert r.http(method.upper(), path)[0] == 405


def test_the_document_is_valid_openapi_built_from_the_api_constants():
    doc = openapi.document()
    validate_openapi(doc)
    for component in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema({**component, "components": doc["components"]})
    request = doc["components"]["schemas"]["Request"]["properties"]
    assert set(request) == set(FIELDS)
    assert {k: v["maximum"] for k, v in request.items() if "maximum" in v} == LIMITS
    parameters = doc["paths"]["/api/"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == list(QUERY_FIELDS)
    from patrol_keepalive_udp import MAX_DATAGRAM

    assert doc["x-udp"]["max-datagram"] == MAX_DATAGRAM
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, nothing Python-only


def test_bad_requests_do_not_match_the_request_schema():
    request = Draft202012Validator(openapi.schema("Request"))
    assert request.is_valid({"id": "web", "group": "app", "toggle": 7, "cas": 2**64 - 1, "keyvalue": None})
    for bad in ({"toggle": 256}, {"pid": -1}, {"cas": 2**64}, {"ping": 1}, {"pingg": True}, {"keyvalue": []}, [1]):
        assert not request.is_valid(bad), bad


def test_every_answer_of_a_live_patrol_matches_the_document(patrol, tmp_path, sleepers):
    p = patrol.start(live_config(patrol, tmp_path))
    r = Recorder(p)
    make_history(r, p, tmp_path)
    exercise(r, [proc.pid for proc in sleepers[:2]])
    status, report = r.http("POST", "/-/reload")
    assert status == 200 and "app web" in report["unchanged"]
    p.config_path.write_text('{"apps": {"x": {"keepalive": 9}}}')
    status, body = r.http("POST", "/-/reload")
    assert status == 400 and any("keepalive" in e for e in body["errors"])
    p.write_config()

    for proc in sleepers[:2]:  # Patrol never signals a pinged pid it did not start: it would wait for them
        proc.kill()
        proc.wait()
    assert p.terminate() == 0  # the next Patrol reads the state file: records closed at shutdown
    q = patrol.start(p.config)
    r.p = q
    wait_for(lambda: any(h.get("shutdown") for h in r.status()["apps"]["pidapp"].get("history", [])), 10,
             "a record closed at shutdown")
    exercise(r, [proc.pid for proc in sleepers[2:]])

    documented = {(path, method.upper(), int(code))
                  for path, operations in openapi.document()["paths"].items()
                  for method, operation in operations.items() for code in operation["responses"]
                  if code not in openapi.GATE}  # the gate's answers: the next test
    assert documented - r.statuses - set(NOT_PROVOKED) == set(), "documented answers never seen"
    missing = {}
    for name, component in openapi.document()["components"]["schemas"].items():
        if name in r.seen and "properties" in component:
            unseen = {key for key in set(component["properties"]) - r.seen[name]
                      if not any(fnmatch(name, pattern) and key == k for pattern, k in NOT_EXERCISED)}
            if unseen:
                missing[name] = sorted(unseen)
    assert not missing, f"documented keys never seen in an answer: {missing}"
    assert {"Status", "AppStatus", "ServiceStatus", "AppAnswer", "ServiceAnswer", "AppUdpAnswer",
            "ServiceUdpAnswer", "AppRecord", "ServiceRecord", "Errors", "ReloadReport", "SetAnswer"} <= set(r.seen)
    assert "Traceback" not in p.log() + q.log()


def test_the_gate_answers_of_an_authenticated_patrol_match_the_document(patrol, tmp_path):
    token = "t0ken-" + "x" * 20
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    config = patrol.config(apps={"off": patrol.app(1, disabled=True)})
    config["http"]["auth"] = {"token-file": str(token_file)}
    r = Recorder(patrol.start(config))
    operations = [(path, method.upper()) for path, ops in openapi.document()["paths"].items() for method in ops]
    for path, method in operations:
        assert r.http(method, path, b"{}")[0] == 401, (method, path)
    bearer = {"Authorization": f"Bearer {token}"}
    assert r.http("GET", "/openapi.json", headers=bearer) == (200, openapi.document())
    wrong = {"Authorization": "Bearer " + "y" * 26}
    statuses = [r.http("GET", "/status/", headers=wrong)[0] for _ in range(12)]
    assert statuses[0] == 401 and statuses[-1] == 429  # guessing is throttled
    assert {(path, method, 401) for path, method in operations} <= r.statuses
