"""The HTTP transport, black-box: status codes, framing, and malformed input of every kind.

Every bad request must get a 4xx with ``errors`` naming the field and the rule, never a
500 and never a crash; Patrol keeps serving afterwards and logs no traceback.
"""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any, Iterator

import pytest

from patrol.testing import PatrolFactory, PatrolProcess


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatrolProcess]:
    factory = PatrolFactory(tmp_path_factory.mktemp("http"))
    apps = {"web": factory.app(3, name="Web <b>&</b>"), "quiet": factory.app(1, disabled=True)}
    try:
        yield factory.start(factory.config(apps=apps, **{"ping-timeout": 180}))
    finally:
        factory.cleanup()


def raw_http(p: PatrolProcess, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client (no redirect following, any method and header)."""
    host, _, port = p.http.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def errors_of(p: PatrolProcess, method: str, path: str, body: Any = None, raw: bytes | None = None,
              **headers: str) -> tuple[int, list[str]]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
    status, _, payload = raw_http(p, method, path, data, headers)
    decoded = json.loads(payload)
    assert set(decoded) == {"errors"}, decoded
    return status, decoded["errors"]


# -- the shape of answers --------------------------------------------------------------


def test_status_is_tab_indented_json_with_the_singular_service_key(live):
    status, headers, payload = raw_http(live, "GET", "/status/")
    assert status == 200
    assert headers["content-type"] == "application/json; charset=utf-8"
    assert payload.endswith(b"}\n") and b'\n\t"apps": {' in payload
    body = json.loads(payload)
    assert set(body) >= {"instance-id", "apps", "service", "started"} and body["service"] == {}
    assert "id" not in body["apps"]["web"] and "group" not in body["apps"]["web"]
    assert raw_http(live, "POST", "/status/anything/below")[0] == 200


def test_html_characters_are_escaped_as_go_does(live):
    _, _, payload = raw_http(live, "GET", "/api/?id=web&group=app")
    assert b"\\u003cb\\u003e\\u0026\\u003c/b\\u003e" in payload
    assert json.loads(payload)["name"] == "Web <b>&</b>"


@pytest.mark.parametrize("path,method,code", [
    ("/api?id=web&group=app", "GET", 301),
    ("/status", "GET", 301),
    ("/api?id=web", "POST", 308),
])
def test_unslashed_paths_redirect_and_keep_the_query(live, path, method, code):
    status, headers, _ = raw_http(live, method, path)
    assert status == code
    assert headers["location"] == path.replace("?", "/?", 1) if "?" in path else path + "/"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS", "FOO"])
def test_other_methods_get_405_in_json(live, method):
    assert errors_of(live, method, "/api/") == (405, ["Invalid Method"])


# -- malformed input -------------------------------------------------------------------


@pytest.mark.parametrize("raw,fragment", [
    (b"{", "Invalid Request: not JSON"),
    (b"{'id': 'web'}", "Invalid Request: not JSON"),
    (b"\xff\xfe\xfd", "Invalid Request"),
    (b"[" * 50_000, "Invalid Request: JSON nested too deeply"),
    (b'{"id": "web", "group": "app"} trailing', "Invalid Request: not JSON"),
    (b"1" * 5000, "Invalid Request: not JSON"),
    (b"[1, 2]", "request: must be a JSON object (got array)"),
    (b'"app"', "request: must be a JSON object (got string)"),
])
def test_bodies_that_are_not_a_json_object(live, raw, fragment):
    status, errors = errors_of(live, "POST", "/api/", raw=raw)
    assert status == 400 and len(errors) == 1 and errors[0].startswith(fragment), errors


@pytest.mark.parametrize("request_,message", [
    ({"id": 5, "group": "app"}, "id: must be a string (got number)"),
    ({"id": "web", "group": ["app"]}, "group: must be a string (got array)"),
    ({"id": "web", "group": "app", "ping": "yes"}, "ping: must be true or false (got string)"),
    ({"id": "web", "group": "app", "ping": True, "pid": -1}, "pid: must be between 0 and 4294967295 (got -1)"),
    ({"id": "web", "group": "app", "ping": True, "pid": 2**32},
     "pid: must be between 0 and 4294967295 (got 4294967296)"),
    ({"id": "web", "group": "app", "ping": True, "pid": 1.5}, "pid: must be an integer (got number)"),
    ({"id": "web", "group": "app", "toggle": 300}, "toggle: must be between 0 and 255 (got 300)"),
    ({"id": "web", "group": "app", "toggle": True}, "toggle: must be an integer (got boolean)"),
    ({"id": "web", "group": "app", "toggle": "2"}, "toggle: must be an integer (got string)"),
    ({"id": "web", "group": "app", "cas": -5}, "cas: must be between 0 and 18446744073709551615 (got -5)"),
    ({"id": "web", "group": "app", "keyvalue": [1]}, "keyvalue: must be an object (got array)"),
    ({"id": "web", "group": "app", "keyvalue-replace": 1}, "keyvalue-replace: must be true or false (got number)"),
    ({"id": "web", "group": "app", "secret": 123}, "secret: must be a string (got number)"),
    ({"id": "web", "group": "app", "history": "all"}, "history: must be true or false (got string)"),
])
def test_wrong_types_and_ranges_name_the_field(live, request_, message):
    assert errors_of(live, "POST", "/api/", request_) == (400, [message])


def test_unknown_fields_are_refused_with_a_hint(live):
    status, errors = errors_of(live, "POST", "/api/", {"ID": "web", "group": "app", "pingg": True})
    assert status == 400 and len(errors) == 2
    assert errors[0].startswith("ID: unknown field (did you mean 'id'?)")
    assert errors[1].startswith("pingg: unknown field (did you mean 'ping'?)")


@pytest.mark.parametrize("app_id", ["../web", "web/../web", "..", "%2e%2e", "web\x00", "x" * 5000])
def test_odd_ids_are_unknown_apps(live, app_id):
    assert errors_of(live, "POST", "/api/", {"id": app_id, "group": "app"}) == (400, ["Unknown App"])


def test_oversized_bodies_get_413_without_being_read(live):
    status, errors = errors_of(live, "POST", "/api/", raw=b"{" + b" " * (64 * 1024) + b"}")
    assert status == 413 and errors[0].startswith("Invalid Body: larger than 65536 bytes")
    assert live.api(id="web", group="app")[0] == 200  # the connection pool is fine afterwards


def test_a_lying_content_length_is_refused(live):
    host, _, port = live.http.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n{}")
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("query,message", [
    ("id=web&group=app&toggle=abc", "toggle: must be a non-negative integer (got 'abc')"),
    ("id=web&group=app&toggle=-1", "toggle: must be a non-negative integer (got '-1')"),
    ("id=web&group=app&toggle=257", "toggle: must be between 0 and 255 (got 257)"),
    ("id=web&group=app&toggle=" + "9" * 30, "toggle: must be between 0 and 255 (got 18446744073709551616)"),
    ("id=web&group=app&cas=1.5", "cas: must be a non-negative integer (got '1.5')"),
    ("id=web&id=other&group=app", "id: given more than once"),
    ("id=web&group=app&ping=true", "ping: unknown query parameter (pings, pids and key/values need a POST "
                                   "with a JSON body) (known: id, group, toggle, history, secret, cas)"),
    ("id=web&group=app&x=1", "x: unknown query parameter (known: id, group, toggle, history, secret, cas)"),
])
def test_bad_query_strings(live, query, message):
    assert errors_of(live, "GET", "/api/?" + query) == (400, [message])


def test_get_can_read_and_toggle(live):
    status, body = live.api_get(id="QUIET", group="apps", history="")
    assert status == 200 and body["id"] == "quiet" and body["disabled"] is True
    assert live.api_get(id="quiet", group="app", toggle=7, cas="")[0] == 200
    assert "disabled" not in live.api_get(id="quiet", group="app", toggle=2)[1]  # answered before
    assert live.app("quiet")["disabled"] is True


def test_cross_site_browser_requests_are_refused(live):
    body = {"id": "web", "group": "app", "toggle": 2}
    refused = "Cross-site request refused"
    for site in ("cross-site", "same-site"):
        status, errors = errors_of(live, "POST", "/api/", body, **{"Sec-Fetch-Site": site})
        assert status == 403 and errors[0].startswith(refused)
    status, errors = errors_of(live, "GET", "/api/?id=web&group=app&toggle=2", Origin="http://evil.example")
    assert status == 403 and errors[0].startswith(refused)
    assert "disabled" not in live.app("web")
    host = live.http
    for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Origin": f"http://{host}"}, {"Sec-Fetch-Site": "none"}):
        status, _, _ = raw_http(live, "POST", "/api/", json.dumps({"id": "web", "group": "app"}).encode(),
                                {**headers, "Host": host})
        assert status == 200


def test_after_all_that_patrol_serves_and_logged_no_traceback(live):
    assert live.status()["apps"]["web"]["name"] == "Web <b>&</b>"
    assert live.proc is not None and live.proc.poll() is None
    log = live.log()
    assert "Traceback" not in log and '"level": "error"' not in log
