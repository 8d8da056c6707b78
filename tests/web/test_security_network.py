"""Authentication, guessing and input over HTTP and UDP, against a live ``patrol run``.

* F7: a request let in without the token because it carries an app's secret is a ping
  and nothing else, over HTTP as over UDP, and its answer shows no key/values.
* F8, F9: guesses of secrets and tokens are counted in one throttle for HTTP and UDP,
  by client: all of loopback is one client (an IPv6 /64 too), whatever its address.
* F14: text that is not valid Unicode (a lone UTF-16 surrogate) is refused in every
  field, naming it (UDP: silence), instead of a 500 or a stored value that breaks pages.
* F15: non-ASCII cookies and form fields are compared, not crashed on.
* F19: what UDP answers, how much larger than the request, and ``udp.answer``.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from patrol.api.access import LOOPBACK, client_key
from patrol.config import ConfigError, parse_config
from patrol.plugin.model import Listen
from patrol.plugin.loader import Plugins
from patrol.util.ratelog import QuietLog
from patrol.testing import UNITTEST_ENV, PatrolFactory, PatrolProcess, wait_for

TOKEN = "tok-" + os.urandom(12).hex()
SECRET = "s3cret-" + os.urandom(6).hex()
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def write_token(directory: Path) -> str:
    path = directory / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


def with_auth(patrol: PatrolFactory, config: dict[str, Any]) -> dict[str, Any]:
    config["http"]["auth"] = {"token-file": write_token(patrol.tmp_path)}
    return config


def address(p: PatrolProcess) -> tuple[str, int]:
    host, _, port = p.http.rpartition(":")
    return host, int(port)

def logged(p: PatrolProcess, text: str) -> bool:
    """Is ``text`` in Patrol's log? (A function: pytest would diff the whole log.)"""
    return text in p.log()



def udp_address(p: PatrolProcess) -> tuple[str, int]:
    host, _, port = p.udp.rpartition(":")
    return host, int(port)


def post(p: PatrolProcess, body: bytes | dict[str, Any], headers: dict[str, str] | None = None,
         source: str = "127.0.0.1", path: str = "/api/") -> tuple[int, Any]:
    """POST raw bytes (or a JSON object) from ``source``; (status, decoded answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection(*address(p), timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(payload)
    except ValueError:
        return response.status, payload


def send(p: PatrolProcess, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> int:
    """A request with raw header bytes (any byte a socket can carry); its status."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
             f"Content-Length: {len(body)}".encode(), *(k + b": " + v for k, v in headers)]
    with socket.create_connection(address(p), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def datagram(p: PatrolProcess, data: bytes | dict[str, Any], source: str = "127.0.0.1",
             timeout: float = 10) -> bytes:
    """Send one datagram from ``source`` and return its answer (it must come)."""
    payload = data if isinstance(data, bytes) else json.dumps(data).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.sendto(payload, udp_address(p))
        return sock.recv(65536)


def drained(p: PatrolProcess, sentinel: dict[str, Any]) -> None:
    """Wait until Patrol took every datagram sent before (after a flood its socket's
    buffer may be full, and drop what comes next): until ``sentinel`` is answered."""

    def answered() -> bool:
        try:
            return bool(datagram(p, sentinel, timeout=0.2))
        except socket.timeout:
            return False

    wait_for(answered, 20, "Patrol to take the flood of datagrams")


def unanswered(p: PatrolProcess, data: bytes | dict[str, Any], sentinel: dict[str, Any],
               source: str = "127.0.0.1") -> bool:
    """Is ``data`` met with silence? Without waiting on a clock: Patrol handles datagrams
    in order and answers each at once, so once the answer to ``sentinel`` (a request
    that is answered), sent after ``data``, has arrived, any answer to ``data`` has too."""
    payload = data if isinstance(data, bytes) else json.dumps(data).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.sendto(payload, udp_address(p))
        assert datagram(p, sentinel), "no answer to the sentinel"
        sock.setblocking(False)
        try:
            sock.recv(65536)
        except BlockingIOError:
            return True
        return False


def has_keyvalue(body: Any) -> bool:
    if isinstance(body, dict):
        return "keyvalue" in body or any(has_keyvalue(v) for v in body.values())
    if isinstance(body, list):
        return any(has_keyvalue(v) for v in body)
    return False


# -- F7: the secret lets in pings, nothing else ------------------------------------------------


PURE_UDP_PING = {"id": "udp", "group": "app", "ping": True, "secret": SECRET}
NOT_ONLY_PINGS = [{"toggle": 3}, {"toggle": 0}, {"keyvalue": {"k": "overwritten"}}, {"keyvalue-replace": True},
                  {"history": True}, {"cas": 1}, {"toggle": None}]


def test_a_secret_without_the_token_lets_in_pings_only_over_http_and_udp(patrol: PatrolFactory) -> None:
    """With ``http.auth``: a request carrying an app's secret but not the token is let
    in only if it is a ping and nothing else, over both transports, and its answer
    carries no key/values. Before: over HTTP the secret also toggled the app and
    read and wrote its key/values."""
    apps = {
        "web": patrol.app(3, name="Web", secret=SECRET, env=[f"PATROL_SECRET={SECRET}", "TESTAPP_PING_DELAY=0.2",
                                                                  "TESTAPP_PING_EVERY=0.3"]),
        "udp": patrol.app(4, name="UDP", secret=SECRET, env=[f"PATROL_SECRET={SECRET}", "TESTAPP_PING_DELAY=0.2",
                                                                  "TESTAPP_PING_EVERY=0.3"], **{"pid-path": "u.pid"}),
    }
    p = patrol.start(with_auth(patrol, patrol.config(apps=apps)), env=UNITTEST_ENV)
    p.headers = dict(BEARER)
    for app_id in apps:
        assert p.api(id=app_id, group="app", secret=SECRET, keyvalue={"k": "private"})[0] == 200
    for extra in NOT_ONLY_PINGS:
        ping = {"id": "web", "group": "app", "ping": True, "secret": SECRET, **extra}
        assert post(p, ping)[0] == 401, extra
        udp_ping = {**ping, "id": "udp"}
        assert unanswered(p, udp_ping, PURE_UDP_PING), extra
    status, answer = post(p, {"id": "web", "group": "app", "ping": True, "secret": SECRET})
    assert status == 200 and answer["id"] == "web" and not has_keyvalue(answer), answer
    answer = json.loads(datagram(p, PURE_UDP_PING))
    assert answer["id"] == "udp" and not has_keyvalue(answer), answer
    for app_id in apps:
        entry = p.api(id=app_id, group="app", secret=SECRET)[1]
        assert "disabled" not in entry and not entry.get("restarts") and entry["keyvalue"] == {"k": "private"}


# -- F8, F9: one throttle, by client ---------------------------------------------------------


def test_secret_guesses_over_udp_are_throttled_with_http(patrol: PatrolFactory) -> None:
    """3,000 wrong secrets over UDP, then the right one: silence, a log line, and the
    same block over HTTP; another item's secret still works. Before: no throttle, no
    log line over UDP, and the right secret was answered."""
    apps = {"vault": patrol.app(1, name="Vault", secret=SECRET),
            "other": patrol.app(1, name="Other", secret="other-secret", **{"pid-path": "o.pid"})}
    p = patrol.start(patrol.config(apps=apps))
    right = {"id": "vault", "group": "app", "secret": SECRET}
    other = {"id": "other", "group": "app", "secret": "other-secret"}
    assert datagram(p, right)  # answered before any guess
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(3000):
            sock.sendto(json.dumps({**right, "secret": f"guess-{i:04d}"}).encode(), udp_address(p))
    drained(p, other)
    assert logged(p, '"too many failed attempts: blocked"')
    assert unanswered(p, right, other)  # the right secret is refused too, for the window
    assert unanswered(p, right, other, source="127.0.0.9")  # from any loopback address
    status, body = post(p, {**right, "toggle": 1})
    assert status == 429 and body["errors"][0].startswith("Too Many Failed Attempts"), body
    assert datagram(p, other)  # another item's secret is another credential
    assert "disabled" not in p.app("vault")
    records = [r for r in p.log_records() if r.get("credential") == "secret of app/vault"]
    assert any(r["event"] == "too many failed attempts: blocked" and r["transport"] == "udp" for r in records)
    assert len(records) < 50, f"{len(records)} log lines for 3,000 guesses: not rate limited"
    assert not logged(p, "guess-") and not logged(p, SECRET)


def test_token_guesses_from_100_loopback_addresses_are_one_client(patrol: PatrolFactory) -> None:
    """1,000 wrong tokens, ten from each of 100 addresses in 127.0.0.0/8: the block
    starts after the tenth, whatever the address, and holds for every loopback address.
    Before: counted per address, none of them got a 429."""
    p = patrol.start(with_auth(patrol, patrol.config(apps={"web": patrol.app(1, name="Web")})))
    codes = []
    for i in range(1000):
        source = f"127.0.{i % 100}.{2 + i // 100}"
        codes.append(post(p, {"id": "web", "group": "app"}, {"Authorization": "Bearer wrong-token-012345"},
                          source=source)[0])
    assert codes[:10] == [401] * 10 and codes[10:] == [429] * 990, codes[:20]
    for source in ("127.0.0.1", "127.255.255.254"):
        assert post(p, {"id": "web", "group": "app"}, BEARER, source=source)[0] == 429
    assert logged(p, '"client": "loopback"')


READ = {"id": "vault", "group": "app"}  # no secret: a read, answered (and no guess)


def test_guesses_over_http_and_udp_add_up(patrol: PatrolFactory) -> None:
    """Five wrong secrets over HTTP and five over UDP are ten: blocked on both."""
    p = patrol.start(patrol.config(apps={"vault": patrol.app(1, name="Vault", secret=SECRET)}))
    for i in range(5):
        assert post(p, {"id": "vault", "group": "app", "secret": f"http-{i}"}, source="127.0.0.3")[0] == 400
        assert unanswered(p, {"id": "vault", "group": "app", "secret": f"udp-{i}"}, READ, source="127.0.0.4")
    assert post(p, {"id": "vault", "group": "app", "secret": SECRET})[0] == 429
    assert unanswered(p, {"id": "vault", "group": "app", "secret": SECRET}, READ)


@pytest.mark.parametrize("host,client", [
    ("127.0.0.1", LOOPBACK), ("127.1.2.3", LOOPBACK), ("::1", LOOPBACK), ("::ffff:127.0.0.7", LOOPBACK),
    ("10.1.2.3", "10.1.2.3"), ("::ffff:10.1.2.3", "10.1.2.3"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"), ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"), ("fe80::1%eth0", "fe80::/64"), ("", "unknown"), ("junk", "junk"),
])
def test_clients_are_what_one_attacker_can_cheaply_be(host: str, client: str) -> None:
    assert client_key(host) == client


def test_log_lines_a_client_can_cause_are_rate_limited() -> None:
    lines: list[tuple[str, dict[str, Any]]] = []

    class Logger:
        def info(self, event: str, **fields: Any) -> None:
            lines.append((event, fields))

    now = [0.0]
    quiet = QuietLog(Logger(), every=10, burst=3, clock=lambda: now[0])
    assert quiet.emit("a", "info", "first") and not quiet.emit("a", "info", "again")
    assert quiet.emit("b", "info", "other key") and quiet.emit("c", "info", "third key")
    assert not quiet.emit("d", "info", "over the overall budget")
    now[0] = 10.0
    assert quiet.emit("a", "info", "later")
    assert lines[-1] == ("later", {"suppressed": 1, "suppressed_other": 1})
    for i in range(5000):  # the table of keys is bounded
        quiet.emit(i, "info", "many")
    assert len(quiet._keys) <= 1000


# -- F14, F15: any text, any bytes: no 500 ---------------------------------------------------


SURROGATES = [
    (b'{"id": "vault", "group": "app", "secret": "\\ud800"}', "secret"),
    (b'{"id": "plain", "group": "app", "keyvalue": {"k": "\\udfff"}}', "keyvalue"),
    (b'{"id": "plain", "group": "app", "keyvalue": {"\\ud800": 1}}', "keyvalue"),
    (b'{"id": "plain", "group": "app", "keyvalue": {"k": [{"deep": ["\\udc00x"]}]}}', "keyvalue"),
    (b'{"id": "\\ud800plain", "group": "app"}', "id"),
    (b'{"id": "plain", "group": "app\\udbff"}', "group"),
    (b'{"id": "plain", "group": "app", "\\ud800": 1}', "request"),
]


def test_text_that_is_not_unicode_is_refused_in_every_field(patrol: PatrolFactory) -> None:
    """A lone surrogate (JSON ``"\\ud800"``) in any field gets 400 naming the field over
    HTTP and silence over UDP; nothing is stored, and the item's pages still render.
    Before: a 500 for ``secret``, and a key/value stored that broke the item's page."""
    apps = {"plain": patrol.app(1, name="Plain"), "vault": patrol.app(1, name="Vault", secret=SECRET,
                                                                          **{"pid-path": "v.pid"})}
    p = patrol.start(patrol.config(apps=apps))
    for body, field in SURROGATES:
        status, answer = post(p, body)
        assert status == 400 and any(e.startswith(f"{field}: ") and "not valid Unicode" in e
                                     for e in answer["errors"]), (body, answer)
        assert unanswered(p, body, {"id": "plain", "group": "app"}), body
    assert not p.api(id="plain", group="app")[1].get("keyvalue")  # nothing was stored
    for path in ("/", "/app/plain", "/app/vault", "/status/"):
        assert p.request("GET", path)[0] == 200, path


NON_ASCII = ["é", "\u2603", "\x80\xff", "\u00e9\u0000"]


@pytest.mark.parametrize("auth", [True, False], ids=["auth", "no-auth"])
def test_non_ascii_cookies_and_forms_are_no_errors(patrol: PatrolFactory, auth: bool) -> None:
    """Cookies (session, CSRF, flash, log unlock) and form fields (CSRF, token, secret)
    holding non-ASCII text, as raw UTF-8 or Latin-1 bytes or percent-encoded: never a
    5xx, on every page including ``/login``. Before: 500 (``hmac.compare_digest``
    TypeError) on every page in auth mode."""
    config = patrol.config(apps={"vault": patrol.app(1, name="Vault", secret=SECRET)})
    p = patrol.start(with_auth(patrol, config) if auth else config)
    pages = ["/", "/login", "/status/", "/app/vault", "/app/vault/logs/", "/gui/state.json", "/api/?id=vault&group=app"]
    for text in NON_ASCII:
        for raw in {text.encode("utf-8"), text.encode("latin-1", "replace")}:
            for name in (b"patrol_session", b"patrol_csrf", b"patrol_flash", b"patrol_unlock_app_vault"):
                cookie = [(b"Cookie", name + b"=" + raw + b"." + raw)]
                for page in pages:
                    assert send(p, "GET", page, cookie) < 500, (page, name, raw)
            form = urllib.parse.urlencode({"csrf": text, "token": text, "secret": text, "id": "vault",
                                           "group": "app", "action": "enable", "next": "/"}).encode()
            for page in ("/login", "/", "/unlock", "/logout"):
                for headers in ([], [(b"Cookie", b"patrol_csrf=" + raw)]):
                    status = send(p, "POST", page, [(b"Content-Type", b"application/x-www-form-urlencoded"),
                                                    *headers], form)
                    assert status < 500, (page, raw, headers)
    assert not logged(p, "request failed") and not logged(p, "Traceback")


# -- F19: UDP reflection -------------------------------------------------------------------


def test_udp_answers_can_be_limited_to_pings_no_larger_than_the_request(patrol: PatrolFactory) -> None:
    """``udp.answer``: ``full`` answers anything several times the request's size
    (the original's behaviour, measured here); ``pings-only`` handles pings only;
    ``minimal`` handles pings only and answers no more bytes than it got."""
    apps = {"web": patrol.app(1, name="Web with a long name " * 4),
            "udp": patrol.app(4, name="Pinged", env=["TESTAPP_PING_DELAY=0.2", "TESTAPP_PING_EVERY=0.3"],
                              **{"pid-path": "u.pid"})}
    p = patrol.start(patrol.config(apps=apps), env=UNITTEST_ENV)
    read = b'{"id":"web","group":"app"}'
    ping = b'{"id":"udp","group":"app","ping":true}'
    factors = {}
    for name, request in (("read", read), ("ping", ping)):
        answer = datagram(p, request)
        factors[name] = len(answer) / len(request)
    assert min(factors.values()) > 1  # what an attacker gains by forging the source address
    for mode in ("pings-only", "minimal"):
        p.config["udp"]["answer"] = mode
        p.write_config()
        assert p.request("POST", "/-/reload", headers={})[0] == 200
        sentinel = json.loads(ping)
        assert unanswered(p, read, sentinel)
        assert unanswered(p, b'{"id":"web","group":"app","toggle":1}', sentinel)
        assert "disabled" not in p.app("web")  # dropped, not applied
        answer = datagram(p, ping)
        if mode == "minimal":
            assert answer == b"{}" and len(answer) <= len(ping)
        else:
            assert json.loads(answer)["id"] == "udp"
    print("UDP answer / request: " + ", ".join(f"{k} {v:.1f}x" for k, v in factors.items()))


def config_errors(section: str, values: dict[str, Any]) -> list[str]:
    plugins = Plugins(strict=True)
    from patrol.config import Methods

    document = {"apps": {"a": {"keepalive": 1, "name": "A", "binary": "a", "working-directory": "/srv",
                               "log-directory": "logs", "pid-path": "a.pid"}}, section: values}
    with pytest.raises(ConfigError) as caught:
        parse_config(document, Methods(plugins.keepalives, plugins.services), source="config.json")
    return caught.value.errors


@pytest.mark.parametrize("section,values,message", [
    ("udp", {"answer": "none"}, 'udp.answer: must be one of "full", "pings-only", "minimal" (got "none")'),
    ("udp", {"answer": 1}, "udp.answer: must be a string"),
    ("http", {"client-timeout": 0}, "http.client-timeout: must be between 0.1 and 3600 seconds (got 0)"),
    ("http", {"client-timeout": "10"}, "http.client-timeout: must be a number"),
    ("http", {"max-connections": 0}, "http.max-connections: must be between 1 and 65536 (got 0)"),
    ("http", {"max-connections": 1.5}, "http.max-connections: must be an integer"),
])
def test_the_network_limits_are_checked(section: str, values: dict[str, Any], message: str) -> None:
    errors = config_errors(section, values)
    assert any(message in e for e in errors), errors


def test_the_network_limits_default_to_the_documented_values() -> None:
    assert (Listen.client_timeout, Listen.max_connections, Listen.answer) == (10.0, 512, "full")
