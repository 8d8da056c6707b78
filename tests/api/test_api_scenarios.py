"""Spec section 11, scenarios 12-23: the API, black-box over real HTTP and UDP sockets.

One ``patrol run`` serves the whole module; every test uses its own app or service,
so the tests do not see each other's changes. Apps with a ping keepalive are never
spawned here (ping-timeout 180 s gives a 360 s startup grace), so the pings below
decide alone what runs. Pids in pings belong to ``sleep`` processes of the test,
which Patrol must never signal (spec 10.17). Timestamps use RFC 3339 with
nanoseconds, so "newer" needs no sleeping.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from patrol.testing import PatrolFactory, PatrolProcess, pid_alive

NANO = "2006-01-02T15:04:05.999999999Z07:00"
PING_APPS = [f"s{n}" for n in (13, 14, 15, 17, 18, 20, 23)] + ["secret-app", "udp4", "kv-app"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatrolProcess]:
    factory = PatrolFactory(tmp_path_factory.mktemp("api"))
    service_command = fake_service_command(factory.tmp_path)
    apps = {app_id: factory.app(3) for app_id in PING_APPS}
    apps["udp4"] = factory.app(4)
    apps["secret-app"]["secret"] = "abc"
    apps["pidapp"] = factory.app(2)
    apps["pidpatrol"] = factory.app(1, disabled=True)
    service = {"management": 1, "service": "fake", "name": "Fake", "service-command": str(service_command)}
    services = {"ssh": dict(service), "secret-svc": {**service, "secret": "abc"}}
    config = factory.config(apps=apps, services=services, **{"ping-timeout": 180, "json-timestamp": NANO})
    try:
        yield factory.start(config)
    finally:
        factory.cleanup()


def fake_service_command(directory: Path) -> Path:
    """A ``service`` program whose service is stopped and cannot start."""
    path = directory / "fake-service"
    path.write_text('#!/bin/sh\ncase "$2" in status) exit 3;; *) exit 1;; esac\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def sleeper() -> Iterator[Callable[[], int]]:
    """Start ``sleep`` processes (pids Patrol does not own); all are killed after."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> int:
        procs.append(subprocess.Popen(["sleep", "300"]))
        return procs[-1].pid

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def post(p: PatrolProcess, **request: Any) -> dict[str, Any]:
    status, body = p.api(**request)
    assert status == 200, body
    assert "errors" not in body
    return body


def refused(p: PatrolProcess, *messages: str, **request: Any) -> None:
    status, body = p.api(**request)
    assert (status, body) == (400, {"errors": list(messages)})


def read(p: PatrolProcess, app_id: str, group: str = "app", **extra: Any) -> dict[str, Any]:
    return post(p, id=app_id, group=group, **extra)


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- 12: errors before anything is looked at -------------------------------------------


def test_scenario_12_unknown_group_app_service_and_service_ping(live):
    status, body = live.request("POST", "/api/", raw=b"null")
    assert (status, body) == (400, {"errors": ["Unknown Group"]})
    refused(live, "Unknown Group")
    refused(live, "Unknown Group", group="?")
    refused(live, "Unknown App", group="app")
    refused(live, "Unknown App", group="apps")
    refused(live, "Unknown Service", group="service")
    refused(live, "Services don't support Ping", group="services", ping=True)
    refused(live, "Services don't support Ping", group="Service", ping=True, id="ssh")  # 10.15: lower-cased first


# -- 13-17, 20: reads, pings, pids ------------------------------------------------------


def test_scenario_13_a_fresh_app_reads_empty(live):
    status, body = live.api_get(id="S13", group="APP")
    assert status == 200
    assert body["id"] == "s13" and body["group"] == "app" and body["name"] == "Test App"
    for key in ("errors", "pid", "started", "lastseen", "disabled", "history", "keyvalue", "instance-id"):
        assert key not in body, key
    assert body["cas-invalid"] is False and body["state"] == "waiting"  # not spawned during the startup grace
    assert body["last-reason"] == "waiting for the first ping (up to 360 s)"


def test_scenario_14_first_ping_answers_the_state_before_it(live, sleeper):
    pid = sleeper()
    before = post(live, id="s14", group="app", ping=True, pid=pid)
    assert "pid" not in before and "started" not in before
    after = read(live, "s14")
    assert after["pid"] == pid and "started" in after and "lastseen" not in after
    assert after["state"] == "running" and after["instance-id"]


def test_scenario_15_toggles_ride_on_pings_and_show_next_time(live, sleeper):
    pid = sleeper()
    post(live, id="s15", group="app", ping=True, pid=pid)
    body = post(live, id="s15", group="app", ping=True, toggle=2)
    assert "disabled" not in body  # the state before the request
    body = post(live, id="s15", group="app", ping=True, toggle=1)
    assert body["disabled"] is True and "lastseen" in body
    assert not read(live, "s15").get("disabled")
    assert pid_alive(pid)  # disabling never signalled a pid that only a ping named (10.17)


def test_scenario_16_pid_requires_ping(live, sleeper):
    refused(live, "PID Requires Ping", id="s13", group="app", pid=sleeper())


def test_scenario_17_every_ping_shows_a_newer_lastseen(live, sleeper):
    post(live, id="s17", group="app", ping=True, pid=sleeper())
    seen = []
    for _ in range(4):
        post(live, id="s17", group="app", ping=True)
        seen.append(when(read(live, "s17")["lastseen"]))
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_scenario_20_a_new_pid_closes_the_old_instance(live, sleeper):
    first, second = sleeper(), sleeper()
    post(live, id="s20", group="app", ping=True, pid=first)
    post(live, id="s20", group="app", ping=True, pid=first)
    snapshot = read(live, "s20")
    body = post(live, id="s20", group="app", ping=True, pid=second)
    assert body["pid"] == first
    now = read(live, "s20")
    assert now["pid"] == second and "started" in now and "lastseen" not in now
    assert now["instance-id"] != snapshot["instance-id"]
    [record] = now["history"]
    assert record["pid"] == first and record["instance-id"] == snapshot["instance-id"]
    assert record["started"] == snapshot["started"] and record["lastseen"] == snapshot["lastseen"]
    assert when(record["stopped"]) >= when(snapshot["lastseen"])
    for flag in ("disabled", "restart", "run-once", "shutdown", "exit-code"):
        assert flag not in record, flag
    assert pid_alive(first)  # replaced, not signalled


def test_pidless_ping_of_a_stopped_app_leaves_nothing_behind(live, sleeper):
    """Spec 10.6: the original kept a stale lastseen that closed the next instance early."""
    before = read(live, "s13")
    post(live, id="s13", group="app", ping=True)
    after = read(live, "s13")
    assert "lastseen" not in after and "started" not in after and after["cas"] == before["cas"]


# -- 18, 21: key/values -----------------------------------------------------------------


@pytest.mark.parametrize("item_id,group", [("s18", "app"), ("ssh", "service")])
def test_scenarios_18_and_21_keyvalues_merge_and_replace(live, item_id, group):
    def send(**request: Any) -> dict[str, Any]:
        return post(live, id=item_id, group=group, **request).get("keyvalue", {})

    assert send(keyvalue={"a": "b"}) == {}
    assert send(keyvalue={"c": 1}) == {"a": "b"}
    assert send(keyvalue={"d": "e"}, **{"keyvalue-replace": True}) == {"a": "b", "c": 1}
    assert send(keyvalue={"f": "g"}) == {"d": "e"}
    assert send(keyvalue={"h": "i"}, **{"keyvalue-replace": True}) == {"d": "e", "f": "g"}
    assert send(**{"keyvalue-replace": True}) == {"h": "i"}
    body = post(live, id=item_id, group=group)
    assert "keyvalue" not in body
    if group == "service":
        assert "pid" not in body


def test_keyvalues_are_bounded(live):
    status, body = live.api(id="kv-app", group="app", keyvalue={"big": "x" * 40_000})
    assert status == 200
    status, body = live.api(id="kv-app", group="app", keyvalue={"more": "y" * 40_000})
    assert status == 400 and body["errors"][0].startswith("keyvalue: ")
    assert set(read(live, "kv-app")["keyvalue"]) == {"big"}


# -- 19: who may ping, and where -------------------------------------------------------


def test_scenario_19_ping_support_and_endpoints(live, sleeper):
    refused(live, "Ping Not Supported", id="pidapp", group="app", ping=True)
    refused(live, "Ping Not Supported", id="pidpatrol", group="app", ping=True, pid=sleeper())
    refused(live, "PID Not Supported", id="pidpatrol", group="app", pid=sleeper())
    refused(live, "Invalid Ping Endpoint", id="udp4", group="app", ping=True)
    assert live.udp_request({"id": "s13", "group": "app", "ping": True}) is None  # an error: silence
    reply = live.udp_request({"id": "udp4", "group": "app", "ping": True, "pid": sleeper()})
    assert reply is not None and reply["id"] == "udp4" and reply["cas-invalid"] is False
    assert read(live, "udp4")["state"] == "running"
    post(live, id="s13", group="app", ping=True)  # keepalive 3 over HTTP: accepted


# -- 22: secrets -----------------------------------------------------------------------


@pytest.mark.parametrize("item_id,group", [("secret-app", "app"), ("secret-svc", "service")])
def test_scenario_22_secrets(live, item_id, group):
    def cas() -> int:
        return read(live, item_id, group, secret="abc")["cas"]

    old = cas()
    body = post(live, id=item_id, group=group, toggle=2)
    assert body["cas-invalid"] is True and body["secret"] is True and "disabled" not in body
    assert cas() == old and not read(live, item_id, group, secret="abc").get("disabled")
    refused(live, "Secret Invalid", id=item_id, group=group, secret="ABC")
    refused(live, "Secret Invalid", id=item_id, group=group, secret="abc ")
    assert cas() == old
    body = post(live, id=item_id, group=group, secret="abc", keyvalue={"k": "v"})
    assert body["cas"] == old and "keyvalue" not in body and body["cas-invalid"] is False
    body = read(live, item_id, group, secret="abc")
    assert body["cas"] == old + 1 and body["keyvalue"] == {"k": "v"}


def test_without_the_secret_keyvalues_stay_hidden(live):
    post(live, id="secret-app", group="app", secret="abc", keyvalue={"password": "hunter2"})
    assert "keyvalue" not in read(live, "secret-app")
    assert "keyvalue" not in live.status()["apps"]["secret-app"]
    assert "hunter2" not in json.dumps(live.status())
    assert read(live, "secret-app", secret="abc")["keyvalue"]["password"] == "hunter2"


# -- 23: CAS ---------------------------------------------------------------------------


def test_scenario_23_cas_flow(live, sleeper):
    first = post(live, id="s23", group="app", ping=True, pid=sleeper())["cas"]
    previous = first
    for _ in range(3):  # the response is the state before: each ping's cas is the last one + 1
        cas = post(live, id="s23", group="app", ping=True)["cas"]
        assert cas == previous + 1
        previous = cas
    current = previous + 1
    assert read(live, "s23")["cas"] == current and read(live, "s23")["cas"] == current  # reads change nothing
    body = post(live, id="s23", group="app", ping=True, cas=current, keyvalue={"x": 1}, toggle=4)
    assert body["cas-invalid"] is False and body["cas"] == current
    now = read(live, "s23")
    assert now["cas"] == current + 1  # keyvalue + toggle + ping: one request, one bump
    assert now["keyvalue"] == {"x": 1} and now["run-once"] is True
    body = post(live, id="s23", group="app", cas=current, keyvalue={"y": 2}, toggle=5)
    assert body["cas-invalid"] is True
    again = read(live, "s23")
    assert again["cas"] == current + 1 and again["keyvalue"] == {"x": 1} and again["run-once"] is True
    body = post(live, id="s23", group="app", ping=True, cas=1)  # a stale cas never stops a ping
    assert body["cas-invalid"] is True and read(live, "s23")["cas"] == current + 2
