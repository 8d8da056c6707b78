"""``GET /events`` against a live ``patrol run``: lifecycle events in order, resumed with
``Last-Event-ID`` without gaps, filtered, with heartbeats; a client that does not read
is dropped while the others and the pings go on; streams end when Patrol stops; the
stream is not an idle connection for ``http.client-timeout``."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import pytest

from patrol.testing import UNITTEST_ENV, PatrolFactory, PatrolProcess, wait_for

PINGS = ["TESTAPP_PING_DELAY=0.1", "TESTAPP_PING_EVERY=0.3"]


class Frame(dict):  # type: ignore[type-arg]
    """One Server-Sent Events frame: its fields (``id``, ``event``, ``data``) or a comment."""


class Reader:
    """Reads one event stream in a thread, keeping every frame and comment."""

    def __init__(self, p: PatrolProcess, query: str = "", headers: dict[str, str] | None = None,
                 timeout: float = 20) -> None:
        host, _, port = p.http.rpartition(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.conn.request("GET", f"/events{query}", headers=headers or {})
        self.response = self.conn.getresponse()
        self.frames: list[Frame] = []
        self.comments: list[str] = []
        self.ended = threading.Event()
        self.error: BaseException | None = None
        if self.response.status == 200:
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()

    def _read(self) -> None:
        frame = Frame()
        try:
            while True:
                raw = self.response.readline()
                if not raw:
                    return
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    self.comments.append(line)
                elif line:
                    field, _, value = line.partition(": ")
                    frame[field] = value
                elif frame:
                    self.frames.append(frame)
                    frame = Frame()
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:  # or closed by the test
            self.error = exc
        finally:
            self.ended.set()

    def events(self, *names: str, item: str | None = None) -> list[Frame]:
        return [f for f in self.frames if "event" in f and (not names or f["event"] in names)
                and (item is None or json.loads(f["data"]).get("id") == item)]

    def close(self) -> None:
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)  # the reading thread sees the end
        if hasattr(self, "thread"):
            self.thread.join(5)
        self.conn.close()


@pytest.fixture
def readers() -> Iterator[list[Reader]]:
    opened: list[Reader] = []
    yield opened
    for reader in opened:
        reader.close()


def open_reader(readers: list[Reader], p: PatrolProcess, query: str = "", **headers: str) -> Reader:
    reader = Reader(p, query, headers)
    readers.append(reader)
    return reader


def seq(frame: Frame) -> int:
    return int(frame["id"].rpartition(":")[2])


def crash_loop(app_id: str, tmp: Any) -> dict[str, Any]:
    """An app that exits at once and is restarted at once: a few hundred events a second."""
    return {"keepalive": 1, "name": "Crash", "binary": "/bin/false", "pid-path": f"{app_id}.pid",
            "working-directory": str(tmp), "log-directory": "logs", "backoff-base": 0, "backoff-max": 0}


def test_a_killed_app_shows_closed_then_started_and_a_reconnect_resumes_without_gaps(patrol, readers):
    p = patrol.start(patrol.config(apps={"web": patrol.app(1, name="Web"), "other": patrol.app(1)}))
    first = open_reader(readers, p)
    assert first.response.getheader("Content-Type").startswith("text/event-stream")
    pid = p.running_pid("web", ready=True)
    os.kill(pid, signal.SIGKILL)
    new_pid = p.running_pid("web", other_than=pid)
    wait_for(lambda: first.events("app.started", item="web"), 10, "app.started of web")
    closed, started = first.events("app.closed", item="web"), first.events("app.started", item="web")
    assert seq(closed[0]) < seq(started[-1])
    record = json.loads(closed[0]["data"])["record"]
    assert record["pid"] == pid and "exit-signal" in record or record.get("exit-code") is not None
    assert json.loads(started[-1]["data"])["snapshot"]["pid"] == new_pid
    numbers = [seq(f) for f in first.events()]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # monotonic, no gaps
    last = first.events()[-1]["id"]
    first.close()

    # away: the other app is killed and comes back
    other = p.running_pid("other", ready=True)
    os.kill(other, signal.SIGKILL)
    p.running_pid("other", other_than=other)
    again = open_reader(readers, p, "", **{"Last-Event-ID": last})
    wait_for(lambda: again.events("app.started", item="other"), 10, "the missed events")
    assert not again.events("stream.reset")
    resumed = [seq(f) for f in again.events()]
    assert resumed[0] == seq({"id": last}) + 1 and resumed == list(range(resumed[0], resumed[0] + len(resumed)))
    assert again.events("app.closed", item="other")


def test_an_unknown_last_event_id_says_events_may_be_missed(patrol, readers):
    p = patrol.start(patrol.config(apps={"web": patrol.app(1)}))
    p.running_pid("web")
    reader = open_reader(readers, p, "", **{"Last-Event-ID": "deadbeef:12"})
    wait_for(lambda: reader.events("stream.reset"), 10, "the reset")
    assert "restarted" in json.loads(reader.events("stream.reset")[0]["data"])["reason"]
    wait_for(lambda: reader.events("app.started"), 10, "the kept events after the reset")


def test_filters_heartbeats_and_bad_queries(patrol, readers):
    p = patrol.start(patrol.config(apps={"web": patrol.app(1), "db": patrol.app(1)}))
    web_only = open_reader(readers, p, "?group=app&id=web&heartbeat=1")
    closed_only = open_reader(readers, p, "?event=app.closed")
    for app_id in ("web", "db"):
        pid = p.running_pid(app_id, ready=True)
        os.kill(pid, signal.SIGKILL)
        p.running_pid(app_id, other_than=pid)
    wait_for(lambda: len(closed_only.events()) >= 2, 10, "both apps' closed events")
    wait_for(lambda: web_only.comments, 5, "a heartbeat within a second or two of silence")
    assert {json.loads(f["data"])["id"] for f in web_only.events()} == {"web"}
    assert {f["event"] for f in closed_only.events()} == {"app.closed"}
    assert web_only.comments[0] == ": heartbeat"
    for query, word in (("?group=nope", "group:"), ("?id=../x", "id:"), ("?event=app.nope", "event:"),
                        ("?heartbeat=0", "heartbeat:"), ("?backlog=-1", "backlog:"), ("?what=1", "what:")):
        refused = Reader(p, query)
        assert refused.response.status == 400, query
        assert json.loads(refused.response.read())["errors"][0].startswith(word), query
        refused.close()


def test_a_client_that_never_reads_is_dropped_while_others_and_pings_go_on(patrol, readers, tmp_path):
    apps = {"crash": crash_loop("crash", tmp_path), "udper": patrol.app(4, env=PINGS)}
    p = patrol.start(patrol.config(apps=apps, **{"ping-timeout": 180}), env=UNITTEST_ENV)
    host, _, port = p.http.rpartition(":")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect((host, int(port)))
    stalled.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    try:
        reading = open_reader(readers, p)

        def dropped() -> bool:
            status, text = p.request("GET", "/metrics")
            return "patrol_event_streams_dropped_total 1.0" in text

        wait_for(dropped, 20, "the stalled client to be dropped")
        seen = len(reading.events())
        wait_for(lambda: len(reading.events()) > seen + 50, 10, "the reading client to keep receiving")
        numbers = [seq(f) for f in reading.events()]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        assert reading.error is None and not reading.ended.is_set()
        answer = p.udp_request({"id": "udper", "group": "app", "ping": True})
        assert answer is not None and "errors" not in answer, answer
        stalled.settimeout(10)  # what was sent before the drop, then the end (not a timeout)
        with contextlib.suppress(ConnectionResetError):
            while stalled.recv(65536):
                pass
    finally:
        stalled.close()


def test_a_stream_outlives_the_client_timeout_and_ends_when_patrol_stops(patrol, readers):
    config = patrol.config(apps={"web": patrol.app(1)})
    config["http"]["client-timeout"] = 0.5
    p = patrol.start(config)
    reader = open_reader(readers, p, "?heartbeat=1")
    wait_for(lambda: len(reader.comments) >= 3, 10, "three heartbeats, well past the client timeout")
    assert not reader.ended.is_set()
    started = time.monotonic()
    assert p.terminate() == 0
    assert reader.ended.wait(5), "the stream did not end with Patrol"
    assert time.monotonic() - started < 10
    assert reader.events("patrol.shutdown") or reader.events("app.shutdown") or reader.events("app.closed")


def test_patrol_events_prints_and_follows(patrol):
    p = patrol.start(patrol.config(apps={"web": patrol.app(1, name="Web")}))
    pid = p.running_pid("web", ready=True)
    cli = [sys.executable, "-m", "patrol", "events", "--url", f"http://{p.http}"]
    recent = subprocess.run([*cli, "web"], capture_output=True, text=True, timeout=30)
    assert recent.returncode == 0, recent.stderr
    assert "app.started" in recent.stdout and "app/web" in recent.stdout and f"pid {pid}" in recent.stdout
    follow = subprocess.Popen([*cli, "-f", "-n", "0", "--json", "web"], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: p.request("GET", "/metrics")[1].count("patrol_event_streams 1.0"), 10, "the follower")
        os.kill(pid, signal.SIGKILL)
        assert follow.stdout is not None
        line = json.loads(follow.stdout.readline())
        assert line["name"] == "app.closed" and line["id"] == "web" and line["event-id"]
    finally:
        follow.kill()
        follow.wait()


def test_events_show_what_a_caller_without_the_secret_sees(patrol):
    secret, key, value = "s3cr3t-events-77a1", "kv-key-31c", "kv-value-9e0"
    apps = {"vault": patrol.app(1, secret=secret, keyvalue={key: value}),
            "open": patrol.app(1, keyvalue={"shown-key": "shown-value"})}
    p = patrol.start(patrol.config(apps=apps))
    pid = p.running_pid("vault", ready=True)
    os.kill(pid, signal.SIGKILL)
    p.running_pid("vault", other_than=pid)
    host, _, port = p.http.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/events?follow=0&backlog=1024")
    text = conn.getresponse().read().decode()
    conn.close()
    assert "event: app.closed" in text and "event: app.started" in text
    assert '"shown-key":"shown-value"' in text  # key/values of an item without a secret are shown
    for leak in (secret, key, value):
        assert leak not in text


def test_streams_take_at_most_half_the_connections(patrol, readers):
    config = patrol.config(apps={"web": patrol.app(1)})
    config["http"]["max-connections"] = 8  # the least Patrol allows itself
    p = patrol.start(config)
    for _ in range(2):  # streams that ended do not count
        ended = Reader(p, "?follow=0")
        assert ended.response.status == 200 and ended.ended.wait(5)
        ended.close()
    held = [open_reader(readers, p, "?heartbeat=300") for _ in range(4)]
    assert [r.response.status for r in held] == [200] * 4
    refused = Reader(p, "")
    assert refused.response.status == 503 and refused.response.getheader("Retry-After") == "5"
    assert "half of http.max-connections" in json.loads(refused.response.read())["errors"][0]
    refused.close()
    status, body = p.api_get(id="web", group="app")  # the API still answers
    assert status == 200
    held[0].close()
    wait_for(lambda: Reader(p, "?follow=0").response.status == 200, 5, "room for a stream again")


def test_patrol_events_follows_across_a_restart_of_patrol_and_says_what_may_be_missed(patrol):
    config = patrol.config(apps={"web": patrol.app(1, name="Web")})
    p = patrol.start(config)
    p.running_pid("web", ready=True)
    cli = [sys.executable, "-m", "patrol", "events", "--url", f"http://{p.http}", "-f", "-n", "0"]
    follow = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: "patrol_event_streams 1.0" in p.request("GET", "/metrics")[1], 10, "the follower")
        assert p.terminate() == 0
        assert follow.stdout is not None
        lines = [follow.stdout.readline()]  # Patrol's last events, with their ids
        again = patrol.start(config)
        while "restarted" not in lines[-1]:
            lines.append(follow.stdout.readline())
            assert lines[-1], lines
        assert lines[-1].startswith("-- Patrol restarted since that event"), lines
        again.running_pid("web")
        while "app.started" not in lines[-1]:  # then the new Patrol's events
            lines.append(follow.stdout.readline())
            assert lines[-1], lines
    finally:
        follow.kill()
        follow.wait()


def test_a_stream_ends_when_a_reload_changes_the_token_that_opened_it(patrol, readers):
    old, new = "old-token-" + "a" * 24, "new-token-" + "b" * 24
    token_file = patrol.tmp_path / "token"
    token_file.write_text(old)
    token_file.chmod(0o600)
    config = patrol.config(apps={"web": patrol.app(1)})
    config["http"]["auth"] = {"token-file": str(token_file)}
    p = patrol.start(config, wait=False)
    p.headers = {"Authorization": f"Bearer {old}"}

    def up() -> bool:
        try:
            return p.request("GET", "/status/")[0] == 200
        except OSError:
            return False

    wait_for(up, 15, "patrol")
    opened = open_reader(readers, p, "?heartbeat=1", Authorization=f"Bearer {old}")
    wait_for(lambda: opened.comments, 5, "a heartbeat")
    token_file.write_text(new)
    assert p.request("POST", "/-/reload")[0] == 200
    assert opened.ended.wait(5), "the stream outlived its token"
    p.headers = {"Authorization": f"Bearer {new}"}
    fresh = open_reader(readers, p, "?heartbeat=1", Authorization=f"Bearer {new}")
    wait_for(lambda: len(fresh.comments) >= 2, 5, "the new token's stream to go on")
    assert not fresh.ended.is_set()
