"""``http.auth`` against a live ``patrol run``: every route needs the token, browsers log
in through a form, apps keep pinging with their secret, the client sends the token,
guessing is throttled per client and credential, and remote clients are rate limited.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from patrol.api.access import RateLimit, Throttle
from patrol.testing import (
    UNITTEST_ENV,
    PatrolFactory,
    PatrolProcess,
    free_port,
    wait_for,
)

TOKEN = "tok-" + os.urandom(12).hex()
PING_SECRET = "ping-" + os.urandom(8).hex()
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html,application/xhtml+xml"}
#: (method, path, form or JSON body) of every kind of route Patrol serves
ROUTES = [
    ("GET", "/status/", None), ("GET", "/api/?id=web&group=app", None),
    ("POST", "/api/", {"id": "web", "group": "app", "toggle": 1}), ("POST", "/-/reload", None),
    ("GET", "/openapi.json", None), ("GET", "/", None), ("GET", "/app/web", None),
    ("GET", "/gui/state.json", None), ("GET", "/app/web/log/stdout", None), ("GET", "/app/web/logs/", None),
    ("GET", "/app/web/follow?file=x&offset=0", None), ("GET", "/stdout/?group=app&id=web", None),
    ("GET", "/logs/x?group=app&id=web", None), ("POST", "/", "group=app&id=web&action=enable"),
    ("POST", "/unlock", "id=web&secret=x"), ("GET", "/nonexistent", None),
]


def write_token(directory: Path, token: str = TOKEN) -> Path:
    path = directory / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def auth_config(factory: PatrolFactory, **http: object) -> dict:
    """Apps: a plain one, an HTTP pinger with a secret it sends, one without a secret."""
    config = factory.config(apps={
        "web": factory.app(1, name="Web"),
        "pinger": factory.app(3, name="Pinger", secret=PING_SECRET,
                              env=[f"PATROL_SECRET={PING_SECRET}", "TESTAPP_PING_DELAY=0.2",
                                   "TESTAPP_PING_EVERY=0.3"]),
        "mute": factory.app(3, name="Mute", env=["TESTAPP_PING_DELAY=0.2", "TESTAPP_PING_EVERY=0.3"]),
        "udper": factory.app(4, name="UDP pinger", env=["TESTAPP_PING_DELAY=0.2", "TESTAPP_PING_EVERY=0.3"]),
    })
    config["http"].update({"auth": {"token-file": str(write_token(factory.tmp_path))}, **http})
    return config


def start(factory: PatrolFactory, config: dict) -> PatrolProcess:
    p = factory.start(config, env=UNITTEST_ENV)
    p.headers = dict(BEARER)
    return p


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatrolProcess]:
    factory = PatrolFactory(tmp_path_factory.mktemp("security-auth"))
    try:
        p = start(factory, auth_config(factory))
        wait_for(lambda: p.app("web").get("pid"), 10, "web running")
        yield p
    finally:
        factory.cleanup()


def call(p: PatrolProcess, method: str, path: str, body: object = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    """One request with exactly ``headers`` (none of the fixture's)."""
    kwargs: dict = {"headers": headers or {}}
    if isinstance(body, dict):
        kwargs["json"] = body
    elif isinstance(body, str):
        kwargs["content"] = body
        kwargs["headers"] = {"Content-Type": "application/x-www-form-urlencoded", **kwargs["headers"]}
    return httpx.request(method, f"http://{p.http}{path}", timeout=10, follow_redirects=False, **kwargs)


def csrf(c: httpx.Client, path: str = "/login") -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', c.get(path).text)
    assert match, "no CSRF field"
    return match.group(1)


# -- every route -------------------------------------------------------------------------


@pytest.mark.parametrize("method,path,body", ROUTES)
def test_every_route_needs_the_token(live: PatrolProcess, method: str, path: str, body: object) -> None:
    refused = call(live, method, path, body)
    assert refused.status_code == 401, refused.text
    assert refused.json()["errors"][0].startswith("Authentication required")
    assert refused.headers["www-authenticate"] == 'Bearer realm="patrol"'
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    for headers in (BEARER, {"Authorization": f"Basic {basic}"}, {"Authorization": f"bearer {TOKEN}"}):
        assert call(live, method, path, body, headers).status_code not in (401, 429), (path, headers)


MALFORMED = ["Bearer", "Digest abc", f"Basic {TOKEN}", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(),
             TOKEN]


def test_malformed_authorization_is_refused_without_counting_as_a_guess(live: PatrolProcess) -> None:
    for header in MALFORMED * 2:  # more than the failures allowed, if they counted
        response = call(live, "GET", "/status/", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json() == {"errors": ["Authentication required: use Authorization: Bearer <token> "
                                              "(or Basic with the token as the password)"]}
    assert call(live, "GET", "/status/", headers=BEARER).status_code == 200


def test_the_login_page_and_static_files_are_open_and_show_nothing(live: PatrolProcess) -> None:
    instance = live.status()["instance-id"]
    for path in ("/login", "/static/patrol.css", "/static/patrol.js"):
        response = call(live, "GET", path)
        assert response.status_code == 200, path
        assert instance not in response.text and "Pinger" not in response.text and " up " not in response.text


def test_browsers_asking_for_a_page_go_to_the_login_form(live: PatrolProcess) -> None:
    response = call(live, "GET", "/app/web?x=1&y=2", headers=HTML)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/app/web%3Fx%3D1%26y%3D2"
    page = call(live, "GET", response.headers["location"]).text
    assert 'name="next" value="/app/web?x=1&amp;y=2"' in page and 'type="password" name="token"' in page


def test_a_wrong_token_is_refused(live: PatrolProcess) -> None:
    response = call(live, "GET", "/status/", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert response.status_code == 401 and response.json() == {"errors": ["Authentication failed: the token is wrong"]}
    assert TOKEN not in response.text


# -- the login form ----------------------------------------------------------------------


def test_the_login_form_opens_a_strict_httponly_session(live: PatrolProcess) -> None:
    c = httpx.Client(base_url=f"http://{live.http}", timeout=10, headers=HTML)
    assert c.get("/").status_code == 303
    assert c.post("/login", data={"token": TOKEN, "next": "/"}).status_code == 403  # no CSRF token: refused
    t = csrf(c)
    wrong = c.post("/login", data={"csrf": t, "token": "not-the-token-at-all", "next": "/app/web"})
    assert wrong.status_code == 401 and "The token is wrong." in wrong.text and "patrol_session" not in c.cookies
    empty = c.post("/login", data={"csrf": t, "token": "", "next": "/"})
    assert empty.status_code == 400 and "token: enter the token." in empty.text
    right = c.post("/login", data={"csrf": t, "token": TOKEN, "next": "/app/web"})
    assert right.status_code == 303 and right.headers["location"] == "/app/web"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith("patrol_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Max-Age=43200" in cookie and TOKEN not in cookie
    page = c.get("/app/web")
    assert page.status_code == 200 and 'action="/logout"' in page.text
    assert c.get("/gui/state.json").json()["items"]["app/web"]["state"] == "running"
    assert c.get("/login?next=/app/web").headers["location"] == "/app/web"  # logged in already
    # the session is signed: another expiry, or a MAC of another one, is no session
    value = c.cookies["patrol_session"]
    expires, mac = value.split(".")
    for forged in (f"{int(expires) + 3600}.{mac}", f"{expires}.{'0' * len(mac)}", "9999999999.x", "", "."):
        assert call(live, "GET", "/status/", headers={"Cookie": f"patrol_session={forged}"}).status_code == 401
    out = c.post("/logout", data={"csrf": csrf(c, "/")})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert 'patrol_session=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert c.get("/").status_code == 303


def test_login_redirects_stay_on_patrol(live: PatrolProcess) -> None:
    c = httpx.Client(base_url=f"http://{live.http}", timeout=10)
    t = csrf(c)
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example", "javascript:alert(1)"):
        response = c.post("/login", data={"csrf": t, "token": TOKEN, "next": target})
        assert response.status_code == 303 and response.headers["location"] == "/", target


# -- apps ping with their secret -----------------------------------------------------------


def test_http_pings_carrying_the_apps_secret_need_no_token(live: PatrolProcess) -> None:
    first = wait_for(lambda: live.app("pinger").get("lastseen"), 10, "the pinger's first ping")
    wait_for(lambda: live.app("pinger")["lastseen"] != first, 10, "a later ping")
    assert live.app("pinger")["state"] == "running"
    # the app without a secret cannot ping without the token: its pings are refused
    log = live.workdir / "logs"
    wait_for(lambda: any("HTTP Error 401" in f.read_text() for f in log.rglob("*.stderr.log")), 10,
             "a refused ping in an app's stderr")
    assert not live.app("mute").get("lastseen")
    ping = {"id": "pinger", "group": "app", "ping": True}
    assert call(live, "POST", "/api/", ping).status_code == 401  # no secret
    assert call(live, "POST", "/api/", {**ping, "secret": "wrong"}).status_code == 401
    assert call(live, "POST", "/api/", {**ping, "secret": PING_SECRET}).status_code == 200
    assert call(live, "POST", "/api/", {**ping, "id": "mute", "secret": PING_SECRET}).status_code == 401
    # the secret opens pings only: not reads, toggles, or another app's pings
    for request in ({"id": "pinger", "group": "app", "secret": PING_SECRET},
                    {"id": "pinger", "group": "app", "secret": PING_SECRET, "toggle": 3},
                    {"id": "pinger", "group": "service", "ping": True, "secret": PING_SECRET},
                    {"id": "web", "group": "app", "ping": True, "secret": PING_SECRET}):
        assert call(live, "POST", "/api/", request).status_code == 401, request
    assert call(live, "GET", f"/api/?id=pinger&group=app&secret={PING_SECRET}").status_code == 401


def test_udp_answers_only_pings_when_auth_is_on(live: PatrolProcess) -> None:
    """UDP cannot carry the token: without this, it would be the way around it."""
    wait_for(lambda: live.app("udper").get("lastseen"), 15, "the UDP app's own pings")
    for request in ({"id": "web", "group": "app", "toggle": 2}, {"id": "web", "group": "app"},
                    {"id": "udper", "group": "app", "ping": True, "toggle": 2},
                    {"id": "udper", "group": "app", "ping": True, "keyvalue": {"k": 1}},
                    {"id": "udper", "group": "app", "ping": False}):
        assert live.udp_request(request, timeout=0.3) is None, request
    assert "disabled" not in live.app("web") and "disabled" not in live.app("udper")
    answer = live.udp_request({"id": "udper", "group": "app", "ping": True})
    assert answer is not None and answer["id"] == "udper"


# -- the client ----------------------------------------------------------------------------


def patrol_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    return subprocess.run([sys.executable, "-m", "patrol", *args], capture_output=True, text=True,
                          env={**clean, **(env or {})}, timeout=30)


def test_the_client_sends_the_token_from_a_file_the_environment_or_the_config(live: PatrolProcess) -> None:
    url = f"http://{live.http}"
    token_file = str(live.workdir / "token")
    refused = patrol_cli("status", "--url", url)
    assert refused.returncode == 1
    assert "this Patrol needs its token: pass --token-file FILE or set $PATROL_TOKEN" in refused.stderr
    for args, env in ((["--token-file", token_file], {}), (["--token", TOKEN], {}), ([], {"PATROL_TOKEN": TOKEN}),
                      ([], {"PATROL_TOKEN_FILE": token_file})):
        done = patrol_cli("status", "--url", url, *args, env=env)
        assert done.returncode == 0 and "pinger" in done.stdout, (args, env, done.stderr)
    done = patrol_cli("status", "--config", str(live.config_path))  # address and token from the config
    assert done.returncode == 0 and "pinger" in done.stdout, done.stderr
    missing = patrol_cli("status", "--url", url, "--token-file", "/nonexistent")
    assert missing.returncode == 2 and "cannot read the token file /nonexistent" in missing.stderr
    # an app's shell script pings with its secret alone, as the testapp does
    ping = patrol_cli("ping", "pinger", "--pid", "0", "--url", url, env={"PATROL_SECRET": PING_SECRET})
    assert ping.returncode == 0, ping.stderr


# -- throttling ------------------------------------------------------------------------------


def test_wrong_tokens_are_throttled_per_client_and_credential(patrol: PatrolFactory) -> None:
    p = start(patrol, auth_config(patrol))
    wrong = {"Authorization": "Bearer wrong-token-0123456789"}
    codes = [call(p, "GET", "/status/", headers=wrong).status_code for _ in range(10)]
    assert codes == [401] * 10
    assert call(p, "GET", "/status/").status_code == 401  # no token, no attempt: the usual answer
    blocked = call(p, "GET", "/status/", headers=wrong)
    assert blocked.status_code == 429 and 55 <= int(blocked.headers["retry-after"]) <= 60
    assert blocked.json()["errors"][0].startswith("Too Many Failed Attempts: wait ")
    assert call(p, "GET", "/status/", headers=BEARER).status_code == 429  # the right token is not even tried
    forwarded = {**BEARER, "X-Forwarded-For": "10.9.8.7", "X-Real-IP": "10.9.8.7", "Forwarded": "for=10.9.8.7"}
    assert call(p, "GET", "/status/", headers=forwarded).status_code == 429  # the peer address counts, not headers
    c = httpx.Client(base_url=f"http://{p.http}", timeout=10)
    login = c.post("/login", data={"csrf": csrf(c), "token": TOKEN, "next": "/"})
    assert login.status_code == 429 and "Too Many Failed Attempts" in login.text
    # another credential from the same address is not blocked: apps keep pinging
    ping = {"id": "pinger", "group": "app", "ping": True, "secret": PING_SECRET}
    assert call(p, "POST", "/api/", ping).status_code == 200
    p.terminate()
    log = p.log()
    assert '"event": "too many failed attempts: blocked"' in log and '"client": "loopback"' in log
    assert '"address": "127.0.0.1"' in log and '"event": "attempt refused: too many failed attempts"' in log
    # rate limited: the first failure of a (client, credential) is logged, the next ones are counted
    assert log.count('"event": "authentication failed"') == 1 and TOKEN not in log and "wrong-token" not in log


def test_wrong_item_secrets_are_throttled_per_item_without_auth(patrol: PatrolFactory) -> None:
    config = patrol.config(apps={"a": patrol.app(1, name="A", secret="secret-of-a"),
                                 "b": patrol.app(1, name="B", secret="secret-of-b", **{"pid-path": "b.pid"})})
    p = patrol.start(config, env=UNITTEST_ENV)
    for i in range(10):
        status, body = p.api(id="a", group="app", secret=f"guess-{i}")
        assert status == 400 and body == {"errors": ["Secret Invalid"]}
    for request in (lambda: p.api(id="a", group="app", secret="secret-of-a", toggle=3),
                    lambda: p.api(id="A", group="apps", secret="guess"),
                    lambda: p.api_get(id="a", group="app", secret="secret-of-a")):
        status, body = request()
        assert status == 429 and body["errors"][0].startswith("Too Many Failed Attempts"), body
    assert p.api(id="a", group="app")[0] == 200  # no secret, no guess: a read still works
    assert p.api(id="b", group="app", secret="secret-of-b", keyvalue={"k": 1})[0] == 200
    # the GUI's ways to try a secret are throttled too
    c = httpx.Client(base_url=f"http://{p.http}", timeout=10)
    t = csrf(c, "/")
    unlock = c.post("/unlock", data={"csrf": t, "id": "a", "secret": "secret-of-a", "next": "/app/a"})
    assert unlock.status_code == 303 and "patrol_unlock" not in unlock.headers.get("set-cookie", "")
    assert "Too Many Failed Attempts" in c.get("/app/a").text
    assert p.request("GET", "/stdout/?group=app&id=a&secret=secret-of-a")[0] == 403
    action = c.post("/", data={"csrf": t, "group": "app", "id": "a", "action": "enable", "secret": "secret-of-a"})
    assert action.status_code == 303 and "Too Many Failed Attempts" in c.get("/").text
    assert p.request("GET", "/stdout/?group=app&id=b&secret=secret-of-b")[0] == 200


def test_without_auth_only_requests_addressed_to_an_ip_or_localhost_are_answered(patrol: PatrolFactory) -> None:
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 sends ``Host: evil.example``."""
    p = patrol.start(patrol.config(apps={"web": patrol.app(1, name="Web")}))
    port = p.http.rpartition(":")[2]
    for host in (f"evil.example:{port}", "evil.example", f"evil.localhost:{port}", f"127.0.0.1.nip.io:{port}"):
        response = call(p, "POST", "/api/", {"id": "web", "group": "app", "toggle": 2}, {"Host": host})
        assert response.status_code == 403, host
        assert response.json()["errors"][0].startswith(f'Host "{host}" refused: without http.auth, Patrol only '
                                                       "answers requests addressed to an IP address or localhost")
        assert call(p, "GET", "/", headers={"Host": host}).status_code == 403
    assert "disabled" not in p.app("web")
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}", "10.0.0.1"):
        assert call(p, "GET", "/status/", headers={"Host": host}).status_code == 200, host
    # who opts out of auth opts out of this check too (they may use any name)
    p.terminate()
    q = patrol.start(patrol.config(apps={"web": patrol.app(1, name="Web", **{"pid-path": "q.pid"})},
                                   http={"listen": f"127.0.0.1:{free_port()}", "insecure-no-auth": True}))
    assert call(q, "GET", "/status/", headers={"Host": "patrol.internal"}).status_code == 200


def local_address() -> str | None:
    """An address of this machine that is not loopback: the source address of the route
    to a documentation address (connecting a UDP socket sends no packet), or the host name's."""
    candidates = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))
            candidates.append(s.getsockname()[0])
        except OSError:
            pass
    try:
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:
        pass
    return next((a for a in candidates if not ipaddress.ip_address(a).is_loopback), None)


def test_clients_beyond_loopback_are_rate_limited(patrol: PatrolFactory) -> None:
    address = local_address()
    if address is None:
        pytest.skip("this machine has no address beyond loopback")
    config = auth_config(patrol, listen=f"{address}:{free_port()}", **{"rate-limit": 2})
    p = start(patrol, config)
    started = time.monotonic()
    answers = [call(p, "GET", "/status/", headers=BEARER) for _ in range(20)]
    elapsed = time.monotonic() - started
    codes = [a.status_code for a in answers]
    assert codes[0] == 200 and 429 in codes, codes
    assert codes.count(200) <= 4 + 2 * elapsed + 1, codes  # a burst of twice the rate, then 2 per second
    limited = answers[codes.index(429)]
    assert limited.headers["retry-after"] == "1"
    assert limited.json() == {"errors": ["Too Many Requests: at most 2 requests per second per client"]}
    wait_for(lambda: call(p, "GET", "/status/", headers=BEARER).status_code == 200, 5, "the bucket to refill")


def test_a_reload_changes_the_token_and_ends_old_sessions(patrol: PatrolFactory) -> None:
    p = start(patrol, auth_config(patrol))
    c = httpx.Client(base_url=f"http://{p.http}", timeout=10)
    assert c.post("/login", data={"csrf": csrf(c), "token": TOKEN, "next": "/"}).status_code == 303
    assert c.get("/status/").status_code == 200
    new = "new-" + os.urandom(12).hex()
    write_token(patrol.tmp_path, new)
    assert p.request("POST", "/-/reload")[0] == 200
    assert call(p, "GET", "/status/", headers=BEARER).status_code == 401
    assert call(p, "GET", "/status/", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert c.get("/status/").status_code == 401  # the old session was signed with the old token


def test_a_reload_cannot_drop_auth_while_listening_beyond_loopback(patrol: PatrolFactory) -> None:
    address = local_address()
    if address is None:
        pytest.skip("this machine has no address beyond loopback")
    config = auth_config(patrol, listen=f"{address}:{free_port()}")
    p = start(patrol, config)
    # a config that is valid (loopback, no auth) but does not match the socket still bound
    p.config = {**config, "http": {"listen": "127.0.0.1:1"}}
    p.write_config()
    assert p.request("POST", "/-/reload")[0] == 200
    assert call(p, "GET", "/status/").status_code == 401
    assert call(p, "GET", "/status/", headers=BEARER).status_code == 200
    wait_for(lambda: "http.auth was removed by a reload" in p.log(), 5, "the warning")


# -- the limits themselves (a fake clock: the same code, minutes in no time) ----------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_forgets_old_failures_and_ends_blocks() -> None:
    clock = Clock()
    throttle = Throttle(allowed=3, window=60, block=30, clock=clock)
    assert not throttle.failed("1.2.3.4", "token") and not throttle.failed("1.2.3.4", "token")
    clock.now += 61  # those two are out of the window now
    assert not throttle.failed("1.2.3.4", "token") and not throttle.failed("1.2.3.4", "token")
    assert throttle.retry_after("1.2.3.4", "token") == 0
    assert throttle.failed("1.2.3.4", "token")  # the third within a minute: blocked
    assert throttle.retry_after("1.2.3.4", "token") == 30
    assert throttle.retry_after("1.2.3.4", "app/x") == 0 and throttle.retry_after("5.6.7.8", "token") == 0
    clock.now += 29.5
    assert throttle.retry_after("1.2.3.4", "token") == pytest.approx(0.5)
    clock.now += 1
    assert throttle.retry_after("1.2.3.4", "token") == 0


def test_the_throttle_and_the_rate_limit_are_bounded_in_memory() -> None:
    throttle = Throttle(allowed=2, clock=Clock(), max_tracked=100)
    rate = RateLimit(clock=Clock(), max_tracked=100)
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", "token")
        throttle.failed(f"10.0.{i // 256}.{i % 256}", "token")
        rate.allow(f"10.0.{i // 256}.{i % 256}", 1)
    assert len(throttle._failures) <= 100 and len(throttle._blocked) <= 100 and len(rate._buckets) <= 100
    assert throttle.retry_after("10.0.39.15", "token") > 0  # the newest are kept


def test_the_rate_limit_allows_bursts_then_the_rate() -> None:
    clock = Clock()
    rate = RateLimit(clock=clock)
    assert [rate.allow("a", 2) for _ in range(5)] == [True] * 4 + [False]
    clock.now += 0.5
    assert rate.allow("a", 2) and not rate.allow("a", 2)
    assert rate.allow("b", 2)  # per client
    clock.now += 100
    assert sum(rate.allow("a", 2) for _ in range(10)) == 4  # never more than the burst
