"""Property-based attack on a live Patrol's API, over HTTP (POST and GET) and UDP.

Generated requests range from valid (drawn from the OpenAPI document's request
schema) through plausible (known ids and groups, values of the wrong type or out of
range) to hostile (any JSON value, NaN, huge numbers, deep nesting, junk bytes, bodies
and datagrams just under and over the limits). After every one:

- the answer's status is one the document lists, and its body matches the schema;
- UDP answers or stays silent, and an answer matches the schema;
- Patrol still answers ``/status/`` (sockets have timeouts: a hang fails the test);
- no item's CAS ever went down, and no history is longer than the configured limit.

Then raw bytes in every part of a request (query, headers, cookies, form and other
bodies), on API, GUI and login routes, with and without ``http.auth`` (and with no
credential, the token, a session, or a wrong token): never a 5xx, never a traceback.

``PATROL_FUZZ_EXAMPLES`` sets the number of examples per transport (default 150),
``PATROL_FUZZ_RAW_EXAMPLES`` those of the raw-bytes tests (default 60 each).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import urllib.parse
from collections import Counter
from typing import Any, Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from patrol.api import openapi
from patrol.api.wire import MAX_BODY, QUERY_FIELDS
from patrol.testing import PatrolFactory, PatrolProcess, UNITTEST_ENV, strict_json, wait_for

EXAMPLES = int(os.environ.get("PATROL_FUZZ_EXAMPLES", "150"))
#: no shrinking: the state of the live Patrol changes under every example, so a shrunk
#: example would not mean much, and shrinking against a live daemon takes minutes
FUZZ = settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HISTORY = 5
SECRET = "fuzz-secret"
IDS = ["plain", "web", "udp", "pidapp", "vault", "crash", "db", "locked"]
SENTINEL = "sentinel"  # never targeted: its UDP answer comes after the answer to a fuzzed datagram, if any
MAX_DATAGRAM = openapi.document()["x-udp"]["max-datagram"]
FAKE_SERVICE = """#!/bin/sh
dir='{dir}'
case "$2" in
    status) [ -e "$dir/$1.running" ] && exit 0; exit 3 ;;
    start|restart) touch "$dir/$1.running" ;;
    stop) rm -f "$dir/$1.running" ;;
esac
"""


class Target:
    """The live Patrol under attack, with the invariants it must keep."""

    def __init__(self, p: PatrolProcess) -> None:
        self.p = p
        host, _, port = p.http.rpartition(":")
        self.address = (host, int(port))
        udp_host, _, udp_port = p.udp.rpartition(":")
        self.udp_address = (udp_host, int(udp_port))
        self.cas: dict[tuple[str, str], int] = {}
        self.validators: dict[str, Draft202012Validator] = {}
        self.answered: Counter[tuple[str, int]] = Counter()  # (transport, status) -> count
        self._conn: http.client.HTTPConnection | None = None

    def check(self, schema: dict[str, Any] | None, body: Any, where: str) -> None:
        """``body`` matches ``schema`` (narrowed to the branch it names; validators are cached)."""
        assert schema is not None, f"{where}: the status is not documented"
        schema = openapi.narrowed(schema, body)
        key = json.dumps({k: v for k, v in schema.items() if k != "components"}, sort_keys=True)
        if key not in self.validators:
            self.validators[key] = Draft202012Validator(schema)
        error = best_match(self.validators[key].iter_errors(body))
        assert error is None, f"{where}: {'/'.join(map(str, error.absolute_path))}: {error.message}\n" + \
            json.dumps(body)[:1000]

    def http(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """One request on a kept-alive connection (a new one if Patrol closed it when idle)."""
        while True:
            reused = self._conn is not None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(*self.address, timeout=10)
            try:
                self._conn.request(method, path, body=body)
                resp = self._conn.getresponse()
                status, payload = resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException):
                self._close()
                if reused:
                    continue  # closed while idle: once more on a new connection
                raise  # a new connection failed: Patrol did not answer
            if resp.will_close:
                self._close()
            break
        route = "/status/" if path.startswith("/status/") else path.split("?")[0]
        self.answered[(f"{method} {route}", status)] += 1
        assert status < 500, f"{method} {path}: {status} {payload[:500]!r}"
        answer = strict_json(payload)
        self.check(openapi.response_schema(route, method, status), answer, f"{method} {path} -> {status}")
        if status == 200 and route == "/api/":
            self.item(answer)
        return status, answer

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def udp(self, datagram: bytes) -> Any:
        """Send a datagram, then the sentinel's request; the fuzzed answer is what came before."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.sendto(datagram, self.udp_address)
            sock.sendto(json.dumps({"id": SENTINEL, "group": "app"}).encode(), self.udp_address)
            answers = []
            while True:
                answer = strict_json(sock.recv(65536))
                self.check(openapi.schema("UdpAnswer"), answer, f"UDP {datagram[:200]!r}")
                self.item(answer, history=False)
                if answer["id"] == SENTINEL:
                    break
                answers.append(answer)
        assert len(answers) <= 1, f"one datagram, {len(answers)} answers"
        self.answered[("udp", 200 if answers else 0)] += 1  # 0: silence
        return answers[0] if answers else None

    def item(self, body: dict[str, Any], history: bool = True) -> None:
        self.check_cas((body["group"], body["id"]), body["cas"])
        if history:
            assert len(body.get("history", [])) <= HISTORY, body

    def check_cas(self, key: tuple[str, str], cas: int) -> None:
        assert cas >= self.cas.get(key, 0), f"{key}: CAS went down from {self.cas[key]} to {cas}"
        self.cas[key] = cas

    def alive(self) -> None:
        """Patrol still answers, and every item keeps the invariants."""
        status, body = self.http("GET", "/status/")
        assert status == 200
        for group, table in (("app", body["apps"]), ("service", body["service"])):
            for item_id, entry in table.items():
                self.check_cas((group, item_id), entry["cas"])
                assert len(entry.get("history", [])) <= HISTORY, (item_id, entry["history"])


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    factory = PatrolFactory(tmp_path_factory.mktemp("fuzz"))
    service_command = factory.tmp_path / "fake-service"
    service_command.write_text(FAKE_SERVICE.format(dir=factory.tmp_path))
    service_command.chmod(0o755)
    fast = ["TESTAPP_PING_DELAY=0.1", "TESTAPP_PING_EVERY=0.3"]
    apps = {
        "plain": factory.app(1),
        "web": factory.app(3, env=fast),
        "udp": factory.app(4, env=fast),
        "pidapp": factory.app(2),
        "vault": factory.app(1, secret=SECRET),
        "crash": factory.app(1, env=["TESTAPP_EXIT=1"], **{"backoff-base": 0.2, "backoff-max": 0.5}),
        "big": factory.app(1, disabled=True),  # the target of requests of the largest sizes
        SENTINEL: factory.app(1, disabled=True),
    }
    for app_id, app in apps.items():
        app["pid-path"] = f"{app_id}.pid"
    service = {"management": "service", "service-command": str(service_command)}
    services = {"db": {**service, "name": "DB", "service": "db"},
                "locked": {**service, "name": "Locked", "service": "locked", "secret": SECRET}}
    config = factory.config(apps=apps, services=services, history=HISTORY)
    try:
        p = factory.start(config, env=UNITTEST_ENV)
        wait_for(lambda: len(p.app("crash").get("history", [])) >= 2, 15, "crash to start crashing")
        yield Target(p)
    finally:
        factory.cleanup()


# -- strategies ----------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
    st.text(max_size=40), st.sampled_from(["", "\x00", "\ud7ff\ue000", "app", "SERVICE", "💥" * 10, SECRET]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=10), inner, max_size=4), max_leaves=12)
ids = st.sampled_from(IDS + [i.upper() for i in IDS]) | st.text(max_size=30).filter(
    lambda s: s.lower() != SENTINEL)
groups = st.sampled_from(["app", "apps", "service", "services", "App", "SERVICES", "", " app"]) | st.text(max_size=12)


def from_request_schema() -> st.SearchStrategy[dict[str, Any]]:
    """Requests valid by the document's Request schema (types, ranges, nulls)."""
    request = openapi.document()["components"]["schemas"]["Request"]
    by_type: dict[str, Any] = {
        "string": lambda s: st.text(max_size=30),
        "boolean": lambda s: st.booleans(),
        "integer": lambda s: st.integers(min_value=s["minimum"], max_value=s["maximum"]),
        "object": lambda s: st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    }
    fields = {name: by_type[s["type"][0]](s) | st.none() for name, s in request["properties"].items()}
    return st.fixed_dictionaries({}, optional=fields)


def value(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a good value for a field, sometimes anything at all."""
    return st.one_of(*[good] * 8, json_values)


ITEMS = [(i, g) for i in IDS[:6] for g in ("app", "apps", "APP")] + [(i, g) for i in IDS[6:] for g in ("service",
                                                                                                      "Services")]
OPTIONS: dict[str, st.SearchStrategy[Any]] = {
    "ping": st.booleans(),
    "pid": st.sampled_from([0, 1, 2**32 - 1]) | st.integers(min_value=0, max_value=2**22),
    "toggle": st.integers(min_value=0, max_value=9),
    "history": st.booleans(),
    "keyvalue": st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    "keyvalue-replace": st.booleans(),
    "secret": st.sampled_from([SECRET, SECRET, SECRET.upper(), ""]),
    "cas": st.sampled_from([0, 1]) | st.integers(min_value=0, max_value=200_000),
}
targeted = st.sampled_from(ITEMS).flatmap(lambda item: st.fixed_dictionaries(
    {"id": st.just(item[0]), "group": st.just(item[1])}, optional={k: value(v) for k, v in OPTIONS.items()}))


plausible = st.fixed_dictionaries({}, optional={
    "id": value(ids),
    "group": value(groups),
    "ping": value(st.booleans()),
    "pid": value(st.sampled_from([0, 1, 2**32 - 1, 2**32, -1]) | st.integers(min_value=0, max_value=2**22)),
    "toggle": value(st.integers(min_value=0, max_value=9) | st.sampled_from([255, 256, 257, -1, 2**64])),
    "history": value(st.booleans()),
    "keyvalue": value(st.dictionaries(st.text(max_size=10), json_values, max_size=4)),
    "keyvalue-replace": value(st.booleans()),
    "secret": value(st.sampled_from([SECRET, SECRET.upper(), ""]) | st.text(max_size=20)),
    "cas": value(st.integers(min_value=0, max_value=200_000) | st.sampled_from([2**64 - 1, 2**64, 10**30])),
}) | st.dictionaries(st.text(max_size=20), json_values, max_size=5)
requests = st.one_of(from_request_schema(), plausible, *[targeted] * 6)


def loose_json(value: Any) -> bytes:
    """As a careless client would send it: NaN and Infinity included."""
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def deep(depth: int, opener: str = "[") -> bytes:
    closer = "]" if opener == "[" else "}"
    inner = opener * depth + closer * depth if opener == "[" else '{"a":' * depth + "1" + "}" * depth
    return f'{{"id": "plain", "group": "app", "keyvalue": {{"deep": {inner}}}}}'.encode()


def sized(size: int) -> bytes:
    """A valid request padded to exactly ``size`` bytes with a key/value (replaced each
    time, so that one item only carries this much and every /status/ stays quick)."""
    head = b'{"id": "big", "group": "app", "keyvalue-replace": true, "keyvalue": {"pad": "'
    return head + b"x" * max(0, size - len(head) - 3) + b'"}}'


bodies = st.one_of(
    requests.map(loose_json),
    json_values.map(loose_json),
    st.binary(max_size=200),
    st.sampled_from([b"", b" ", b"null", b"NaN", b"-Infinity", b"1e999", b'{"toggle": 1e400}', b'{"id": "\\ud800"}',
                     b'{"cas": 123456789012345678901234567890123}', b'{"toggle": 1.0}', b'{"pid": 4.2e9}',
                     b'{"id": "plain", "group": "app", "id": "web"}', b"\xef\xbb\xbf{}", b"{" * 5000]),
    st.sampled_from([5, 50, 200, 500, 900, 2000, 20000]).flatmap(
        lambda n: st.sampled_from([deep(n), deep(n, "{")])),
    st.sampled_from([MAX_BODY - 1, MAX_BODY, MAX_BODY + 1, 2 * MAX_BODY]).map(sized),
)
datagrams = st.one_of(
    requests.map(loose_json),
    json_values.map(loose_json),
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"NaN", b"[]", b'{"id": "\\ud800", "group": "app"}', b"{" * 1500]),
    st.sampled_from([5, 50, 300, 600, 1000]).map(deep),
    st.sampled_from([MAX_DATAGRAM - 1, MAX_DATAGRAM, MAX_DATAGRAM + 1]).map(sized),
)
query_keys = st.sampled_from([*QUERY_FIELDS, "ping", "pid", "keyvalue", "x", "", "ID"]) | st.text(max_size=8)
query_values = st.one_of(
    ids, groups, st.sampled_from(["0", "1", "7", "255", "256", "-1", "1.5", "٣", "0x10", " 1", "9" * 25, SECRET]),
    st.integers(min_value=0, max_value=2**70).map(str), st.text(max_size=20),
)
targeted_queries = st.sampled_from(ITEMS).flatmap(lambda item: st.fixed_dictionaries(
    {"id": st.just(item[0]), "group": st.just(item[1])},
    optional={"toggle": value(st.integers(min_value=0, max_value=9).map(str)), "history": st.just(""),
              "secret": value(st.sampled_from([SECRET, "", "wrong"])), "cas": value(st.sampled_from(["0", "1"]))},
)).map(lambda query: urllib.parse.urlencode({k: str(v) for k, v in query.items()}))
queries = st.one_of(
    *[targeted_queries] * 4,
    st.lists(st.tuples(query_keys, query_values), max_size=6).map(
        lambda items: urllib.parse.urlencode(items, encoding="utf-8", errors="surrogatepass")),
    st.text(max_size=40).map(lambda s: urllib.parse.quote(s, safe="%&=+;", errors="surrogatepass")),
    st.sampled_from(["%", "%zz", "%ff%fe=1", "id=%00", "toggle=%EF%BC%91", "&&&", "=", "id", "history&history"]),
)


# -- the properties --------------------------------------------------------------------


@FUZZ
@given(body=bodies)
@example(body=b'{"id": "plain", "group": "app", "keyvalue": {"n": NaN}}')  # answers carried NaN: not JSON
@example(body=b'{"id": "plain", "group": "app", "keyvalue": {"n": 1e400}}')  # Infinity, the same
@example(body=b'{"id": "web", "group": "app", "ping": true, "pid": 2222567777}')  # beyond pid_t: 500
@example(body=deep(500))  # accepted, then the state file could never be written again
@example(body=sized(MAX_BODY + 1))  # one byte too many: 413, in every run (counted below)
def fuzz_post_bodies(target: Target, body: bytes) -> None:
    status, _ = target.http("POST", "/api/", body)
    if len(body) > MAX_BODY:
        assert status == 413
    target.alive()


def reached_past_validation(target: Target, fuzz: Callable[[Target], None], *answers: tuple[str, int]) -> None:
    """Run ``fuzz`` (every example) and check that its strategies reached past validation:
    each of ``answers`` (transport, status) came at least once during it.

    Checked by the test that made the answers, not afterwards by another test: the module's
    tests share one Patrol per worker, and pytest-xdist may run them on different workers
    (with -n 4 the survival test saw none of the queries' answers, run elsewhere)."""
    before = target.answered.copy()
    fuzz(target)
    if EXAMPLES >= 100:
        for answered in answers:
            assert target.answered[answered] > before[answered], (answered, target.answered)


def test_any_post_body_gets_a_documented_answer(target: Target) -> None:
    reached_past_validation(target, fuzz_post_bodies, ("POST /api/", 200), ("POST /api/", 413))


@FUZZ
@given(query=queries)
def fuzz_queries(target: Target, query: str) -> None:
    target.http("GET", "/api/?" + query)
    target.alive()


def test_any_query_gets_a_documented_answer(target: Target) -> None:
    reached_past_validation(target, fuzz_queries, ("GET /api/", 200))


@FUZZ
@given(datagram=datagrams)
@example(datagram=b'{"id": "plain", "group": "app", "keyvalue": {"n": -Infinity}}')
@example(datagram=b'{"id": "udp", "group": "app", "ping": true, "pid": 4294967295}')
def fuzz_datagrams(target: Target, datagram: bytes) -> None:
    answer = target.udp(datagram)
    if len(datagram) > MAX_DATAGRAM:
        assert answer is None
    target.alive()


def test_any_datagram_gets_a_documented_answer_or_silence(target: Target) -> None:
    reached_past_validation(target, fuzz_datagrams, ("udp", 200))


# -- raw bytes in every part of a request, on every kind of route, with and without auth --------

RAW_EXAMPLES = int(os.environ.get("PATROL_FUZZ_RAW_EXAMPLES", "60"))
RAW = settings(FUZZ, max_examples=RAW_EXAMPLES)
TOKEN = "fuzz-token-" + "0123456789abcdef"
RAW_ROUTES = [b"/api/", b"/api", b"/status/", b"/", b"/app/plain", b"/app/vault", b"/service/db", b"/app/plain/logs/",
              b"/app/vault/logs/", b"/app/plain/log/stdout", b"/app/plain/follow", b"/login", b"/logout",
              b"/unlock", b"/gui/state.json", b"/stdout/", b"/stderr/", b"/logs/x", b"/openapi.json", b"/nowhere"]
#: bytes that broke things before, or might: non-ASCII, UTF-8 of a surrogate, controls, encodings
nasty = st.sampled_from([b"\xff", b"\xc3\xa9", b"\xe9", b"\xed\xa0\x80", b"%ed%a0%80", b"%ff", b"\x00", b"\x7f",
                         b"\t", b"\\u00e9", b"\"", b";", b",", b"=", b"%", b"\xef\xbb\xbf", "\u2603".encode()])
raw_bytes = st.one_of(st.binary(max_size=40), nasty, st.lists(nasty | st.binary(max_size=4), max_size=6).map(b"".join))
cookie_names = st.sampled_from([b"patrol_session", b"patrol_csrf", b"patrol_flash", b"patrol_unlock_app_vault",
                                b"patrol_unlock_app_plain"]) | st.binary(max_size=12)
cookies = st.lists(st.tuples(cookie_names, raw_bytes), max_size=4).map(
    lambda pairs: b"; ".join(name + b"=" + value for name, value in pairs))
form_names = st.sampled_from([b"csrf", b"token", b"secret", b"id", b"group", b"action", b"next", b"confirmed",
                              b"file", b"offset", b"last"]) | st.binary(max_size=8)
pairs = st.lists(st.tuples(form_names | st.sampled_from([k.encode() for k in QUERY_FIELDS]), raw_bytes), max_size=6)
encoded_pairs = pairs.map(lambda items: b"&".join(k + b"=" + v for k, v in items))
#: headers whose fuzzing would only make Patrol wait for a body that never comes
FRAMING = (b"content-length", b"transfer-encoding", b"expect", b"connection")
header_names = st.sampled_from([b"Authorization", b"Cookie", b"Content-Type", b"Origin", b"Referer", b"Host",
                                b"Sec-Fetch-Site", b"Accept", b"X-Forwarded-For", b"Forwarded"]) | st.binary(
    min_size=1, max_size=12).filter(lambda name: name.lower() not in FRAMING)
raw_requests = st.fixed_dictionaries({
    "method": st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE"]),
    "route": st.sampled_from(RAW_ROUTES),
    "query": st.one_of(st.just(b""), encoded_pairs, raw_bytes),
    "headers": st.lists(st.tuples(header_names, raw_bytes), max_size=4),
    "cookie": st.one_of(st.just(b""), cookies),
    "ctype": st.sampled_from([b"application/x-www-form-urlencoded", b"application/json", b"text/plain",
                              b"multipart/form-data; boundary=x", b"application/x-www-form-urlencoded; charset=\xff"]),
    "body": st.one_of(st.just(b""), encoded_pairs, raw_bytes, bodies.filter(lambda body: len(body) <= 8192)),
    "credential": st.sampled_from(["none", "token", "session", "wrong"]),
})


def send_raw(address: tuple[str, int], method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
             body: bytes) -> int:
    """One request made of exactly these bytes, on a new connection; the status, or 0
    when Patrol refused it so early that closing reset the connection (with the body
    still unread: a malformed head). A 5xx would be in Patrol's log, checked too."""
    head = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
            b"Content-Length: " + str(len(body)).encode(), *(name + b": " + value for name, value in headers)]
    with socket.create_connection(address, timeout=10) as sock:
        try:
            sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
            response = http.client.HTTPResponse(sock, method=method.decode("latin-1"))
            response.begin()
            response.read()
        except (ConnectionResetError, BrokenPipeError):
            return 0
        return response.status


class RawTarget:
    """A live Patrol and the credentials a fuzzed request may carry."""

    def __init__(self, p: PatrolProcess, credentials: dict[str, list[tuple[bytes, bytes]]]) -> None:
        self.p = p
        host, _, port = p.http.rpartition(":")
        self.address = (host, int(port))
        self.credentials = credentials

    def attack(self, request: dict[str, Any]) -> int:
        target = request["route"] + (b"?" + request["query"] if request["query"] else b"")
        if any(byte <= 0x20 or byte == 0x7F for byte in target):
            target = urllib.parse.quote_from_bytes(target, safe="/?&=%;").encode()  # a request line has no spaces
        headers = [(b"Content-Type", request["ctype"]), *request["headers"], *self.credentials[request["credential"]]]
        if request["cookie"]:
            headers.append((b"Cookie", request["cookie"]))
        headers = [(n, v) for n, v in headers if b"\r" not in n + v and b"\n" not in n + v]  # one header each
        status = send_raw(self.address, request["method"], target, headers, request["body"])
        assert status < 500, f"{status}: {request!r}"
        return status

    def alive(self) -> None:
        """Patrol still answers (a session, not the token: wrong tokens may have blocked it)."""
        status = send_raw(self.address, b"GET", b"/status/", self.credentials["session"], b"")
        assert status == 200, status


@pytest.fixture(scope="module")
def raw_targets(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RawTarget]]:
    """The fuzz target (no auth), and a second Patrol with ``http.auth``: requests to it
    carry no credential, the token, a session cookie from its login form, or junk."""
    factory = PatrolFactory(tmp_path_factory.mktemp("fuzz-auth"))
    token_file = factory.tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    apps = {"plain": factory.app(1), "vault": factory.app(1, secret=SECRET, **{"pid-path": "vault.pid"}),
            "web": factory.app(3, secret=SECRET, env=[f"PATROL_SECRET={SECRET}"], **{"pid-path": "web.pid"})}
    config = factory.config(apps=apps)
    config["http"].update({"auth": {"token-file": str(token_file)}, "client-timeout": 2})
    try:
        p = factory.start(config, env=UNITTEST_ENV)
        with httpx.Client(base_url=f"http://{p.http}", timeout=10) as c:
            csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
            assert csrf, "no CSRF field on the login page"
            login = c.post("/login", data={"csrf": csrf.group(1), "token": TOKEN, "next": "/"})
            assert login.status_code == 303
            session = c.cookies["patrol_session"].encode()
        bearer = [(b"Authorization", b"Bearer " + TOKEN.encode())]
        yield {
            "no-auth": RawTarget(target.p, {"none": [], "token": [], "session": [], "wrong": bearer}),
            "auth": RawTarget(p, {"none": [], "token": bearer, "session": [(b"Cookie", b"patrol_session=" + session)],
                                  "wrong": [(b"Authorization", b"Bearer " + b"x" * 20)]}),
        }
    finally:
        factory.cleanup()


@RAW
@given(request=raw_requests)
@example(request={"method": b"POST", "route": b"/login", "query": b"", "headers": [], "credential": "none",
                  "cookie": b"patrol_csrf=\xc3\xa9", "ctype": b"application/x-www-form-urlencoded",
                  "body": b"csrf=%C3%A9&token=%C3%A9"})  # hmac.compare_digest on non-ASCII: 500 (F15)
@example(request={"method": b"GET", "route": b"/", "query": b"", "headers": [], "credential": "none",
                  "cookie": b"patrol_session=\xe9", "ctype": b"text/plain", "body": b""})
def test_any_bytes_anywhere_get_no_5xx_without_auth(raw_targets: dict[str, RawTarget], request: dict[str, Any]) -> None:
    target = raw_targets["no-auth"]
    target.attack(request)
    target.alive()


@RAW
@given(request=raw_requests)
@example(request={"method": b"POST", "route": b"/api/", "query": b"", "headers": [], "credential": "none",
                  "cookie": b"", "ctype": b"application/json",
                  "body": b'{"id": "web", "group": "app", "ping": true, "secret": "\\ud800"}'})  # 500 (F14)
@example(request={"method": b"GET", "route": b"/login", "query": b"next=%ff", "headers": [], "credential": "none",
                  "cookie": b"patrol_session=99999999999.\xc3\xa9", "ctype": b"text/plain", "body": b""})  # 500 (F15)
def test_any_bytes_anywhere_get_no_5xx_with_auth(raw_targets: dict[str, RawTarget], request: dict[str, Any]) -> None:
    target = raw_targets["auth"]
    target.attack(request)
    target.alive()
    log = target.p.log()
    assert "Traceback" not in log and "request failed" not in log, log[-2000:]


def test_patrol_survived_and_still_supervises(target: Target) -> None:
    """After the attack: valid requests still work on both transports, apps still run."""
    p = target.p
    before = {record["instance-id"] for record in p.app("crash").get("history", [])}
    for app_id in ("plain", "crash"):  # enabled, no run-once: whatever the fuzzing left
        assert target.http("POST", "/api/", json.dumps({"id": app_id, "group": "app", "toggle": 7}).encode())[0] == 200
    pid = p.running_pid("plain", ready=True)
    target.http("POST", "/api/", json.dumps({"id": "plain", "group": "app", "toggle": 3}).encode())
    assert p.running_pid("plain", other_than=pid)
    assert target.udp(json.dumps({"id": "plain", "group": "app"}).encode())["id"] == "plain"

    def renewed() -> list[dict[str, Any]] | None:
        history = p.app("crash").get("history", [])
        return history if len(history) == HISTORY and not before & {r["instance-id"] for r in history} else None

    crash = wait_for(renewed, 20, "crash's history to be made of new records only")
    assert all(record["exit-code"] == 1 for record in crash)  # still restarted, still recorded
    assert p.proc is not None and p.proc.poll() is None
    log = p.log()
    for trouble in ("Traceback", "request failed", "cannot write the state file"):
        assert trouble not in log, log[-3000:]
    probe = subprocess.run([sys.executable, "-m", "patrol", "status", "--url", f"http://{p.http}", "--json"],
                           capture_output=True, text=True, timeout=30, check=False)
    assert probe.returncode == 0 and "plain" in json.loads(probe.stdout)["apps"]
