"""The web GUI over plain HTTP against a live ``patrol run``: forms and their CSRF
protection, input errors, log tails, the log browser's containment, log secrets,
headers, and the original's ``/stdout/``, ``/stderr/`` and ``/logs/`` URLs."""

from __future__ import annotations

import http.client
import re
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Iterator
import httpx
import pytest

from patrol.testing import UNITTEST_ENV, PatrolFactory, PatrolProcess, wait_for

STATIC = Path(__file__).resolve().parents[2] / "patrol" / "web" / "static"
TEMPLATES = STATIC.parent / "templates"
FAKE_INITD = """#!/bin/sh
state="$(dirname "$0")/$(basename "$0").running"
echo "fake $1 called"
case "$1" in
    status) [ -e "$state" ] && exit 0; exit 3 ;;
    start|restart) touch "$state" ;;
    stop) rm -f "$state" ;;
esac
"""


def start_live(factory: PatrolFactory) -> PatrolProcess:
    """Patrol with a printing app, an app with a secret (own log directory) and a service."""
    initd = factory.tmp_path / "initd"
    initd.mkdir()
    (initd / "fakesvc").write_text(FAKE_INITD)
    (initd / "fakesvc").chmod(0o755)
    config = factory.config(
        apps={
            "web": factory.app(1, name="Web", env=["TESTAPP_PRINT_EVERY=0.1"]),
            "sec": factory.app(1, name="Secretive", secret="s3cret", **{"pid-path": "sec.pid",
                                                                         "log-directory": "seclogs"}),
            "merged": factory.app(1, name="Merged", **{"pid-path": "merged.pid", "log-directory": "mergedlogs",
                                                        "std-merge": True}),
        },
        services={"fakesvc": {"name": "Fake", "service": "fakesvc", "management": "initd",
                              "initd-directory": str(initd)}},
    )
    p = factory.start(config, env=UNITTEST_ENV)
    wait_for(lambda: "line 3\n" in p.request("GET", "/stdout/?group=app&id=web")[1], 10, "web's output")
    wait_for(lambda: p.status()["service"]["fakesvc"].get("state") == "running", 10, "the service")
    return p


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatrolProcess]:
    """One Patrol for the tests that only read (pages, logs, refusals)."""
    factory = PatrolFactory(tmp_path_factory.mktemp("gui-http"))
    try:
        yield start_live(factory)
    finally:
        factory.cleanup()


@pytest.fixture
def fresh(patrol: PatrolFactory) -> PatrolProcess:
    """A Patrol of the test's own, for tests that change apps and services."""
    return start_live(patrol)


def client(p: PatrolProcess) -> httpx.Client:
    """A browser-like client: it has loaded the dashboard, so it holds the CSRF cookie."""
    c = httpx.Client(base_url=f"http://{p.http}", timeout=10)
    c.get("/")
    return c


def token(c: httpx.Client) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', c.get("/").text)
    assert match
    return match.group(1)


def post(c: httpx.Client, path: str = "/", headers: dict[str, str] | None = None, **form: str) -> httpx.Response:
    return c.post(path, data=form, headers=headers or {})


def raw_get(p: PatrolProcess, path: str) -> tuple[int, str]:
    """GET exactly ``path`` (no client-side normalisation of ``..``)."""
    host, port = p.http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def messages(html: str) -> list[str]:
    """The error messages of an error page."""
    return re.findall(r"<li>(.*?)</li>", html.split('class="flash error"', 1)[-1])


# -- pages and headers -------------------------------------------------------------------


def test_pages_are_served_with_strict_headers_and_nothing_from_other_hosts(live: PatrolProcess) -> None:
    c = client(live)
    for path in ("/", "/app/web", "/app/sec", "/service/fakesvc", "/app/web/log/stdout", "/app/web/logs/",
                 "/gui/state.json"):
        r = c.get(path)
        assert r.status_code == 200, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"(src|href|action)=\"(https?:)?//", r.text), path
    for name in ("patrol.css", "patrol.js", "favicon.svg"):
        r = c.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
        text = r.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace, not a request
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), name
    assert "url(" not in (STATIC / "patrol.css").read_text()  # no fonts or images from anywhere
    for template in TEMPLATES.glob("*.html"):  # no inline script or style (the CSP would block it)
        source = template.read_text()
        assert "<style" not in source and " style=" not in source, template.name
        assert not re.search(r"\son[a-z]+\s*=", source), template.name
        assert re.findall(r"<script(?![^>]*\ssrc=)", source) == [], template.name


def test_dashboard_and_detail_pages_show_the_items(live: PatrolProcess) -> None:
    c = client(live)
    web = live.app("web")
    html = c.get("/").text
    assert re.search(r'data-key="app/web"[^>]*data-state="running"', html)
    assert f'data-field="pid">{web["pid"]}<' in html
    assert 'data-key="service/fakesvc"' in html and "4 of 4 shown" in html
    detail = c.get("/app/web").text
    assert "TESTAPP_PRINT_EVERY=0.1" in detail and 'href="/app/web/log/stdout"' in detail
    service = c.get("/service/fakesvc").text
    assert "initd: start (ignored exit codes: none)" in service
    assert re.search(r'data-key="service/fakesvc" data-state="running"', service)
    secretive = c.get("/app/sec").text
    assert "s3cret" not in secretive and "(set)" in secretive
    r = c.get("/app/nope")
    assert r.status_code == 404 and "no app with the id &#39;nope&#39;" in r.text
    assert c.get("/app/WEB").status_code == 200  # ids are lower-case; capitals still find it


def test_state_json_is_what_the_live_update_sets(live: PatrolProcess) -> None:
    c = client(live)
    body = c.get("/gui/state.json").json()
    assert body["patrol"]["instance"] == live.status()["instance-id"]
    web = body["items"]["app/web"]
    assert web["state"] == "running" and web["label"] == "running"
    assert web["pid"] == str(live.app("web")["pid"])
    assert re.fullmatch(r"\d+(\.\d+)? (B|KiB|MiB)", web["memory"])
    assert body["items"]["service/fakesvc"]["pid"] == "—"
    assert set(body["items"]) == {"app/web", "app/sec", "app/merged", "service/fakesvc"}


def test_dashboard_query_errors_name_the_parameter(live: PatrolProcess) -> None:
    c = client(live)
    r = c.get("/?sort=bogus&order=up&state=sleeping&type=job&color=red")
    assert r.status_code == 400
    text = r.text
    for expected in ("sort: unknown column &#39;bogus&#39;", "order: must be asc or desc",
                     "state: unknown state &#39;sleeping&#39;", "type: must be app or service",
                     "color: unknown query parameter"):
        assert expected in text
    r = c.get("/?sort=pid&order=desc&type=app")
    assert r.status_code == 200
    rows = re.findall(r'<tr data-key="([^"]+)"([^>]*)>', r.text)
    assert len(rows) == 4  # filtered-out rows are still there (hidden) for the live filter
    shown = [key for key, attributes in rows if " hidden" not in attributes]
    by_pid = sorted(("web", "sec", "merged"), key=lambda i: live.app(i)["pid"], reverse=True)
    assert shown == [f"app/{i}" for i in by_pid]


# -- actions -----------------------------------------------------------------------------


def test_actions_change_state_through_the_api_and_report_once(fresh: PatrolProcess) -> None:
    c = client(fresh)
    t = token(c)
    r = post(c, group="app", id="web", action="runonce-on", csrf=t, next="/app/web")
    assert r.status_code == 303 and r.headers["location"] == "/app/web"
    assert fresh.app("web")["run-once"] is True
    page = c.get("/app/web").text
    assert 'class="flash ok"' in page and "Run once is on for app &#34;Web&#34; (web)" in page
    assert 'class="flash' not in c.get("/app/web").text  # shown once
    post(c, group="service", id="fakesvc", action="runonce-on", csrf=t)
    assert fresh.status()["service"]["fakesvc"]["run-once"] is True  # the original's GUI could not


def test_disable_and_restart_ask_for_confirmation_without_javascript(fresh: PatrolProcess) -> None:
    c = client(fresh)
    t = token(c)
    r = post(c, group="app", id="web", action="disable", csrf=t, next="/")
    assert r.status_code == 200 and 'name="confirmed" value="1"' in r.text
    assert fresh.app("web").get("disabled") is None
    old_pid = fresh.app("web")["pid"]
    r = post(c, group="app", id="web", action="disable", csrf=t, next="/", confirmed="1")
    assert r.status_code == 303
    assert fresh.app("web")["disabled"] is True
    # the history row of the ended instance links to that instance's own log
    wait_for(lambda: fresh.app("web").get("history"), 10, "a history record")
    link = re.search(r'<td data-label="Log"><a href="([^"]+)"', c.get("/app/web").text)
    assert link and c.get(link.group(1) + "?raw=1").text.startswith(f"testapp web started, pid {old_pid},")


def test_forms_without_the_token_cookie_or_from_another_site_are_refused(fresh: PatrolProcess) -> None:
    c = client(fresh)
    t = token(c)
    form = {"group": "app", "id": "web", "action": "runonce-on"}
    cases = [
        (c, {"csrf": t}, {"Origin": "http://evil.example"}, "another site (Origin does not match)"),
        (c, {"csrf": t}, {"Origin": "null"}, "another site"),
        (c, {"csrf": t}, {"Referer": "http://evil.example/page"}, "another site (Referer does not match)"),
        (c, {"csrf": "forged"}, {}, "the form has expired"),
        (c, {}, {}, "the form has expired"),
        (httpx.Client(base_url=f"http://{fresh.http}"), {"csrf": t}, {}, "cookie is missing"),
    ]
    for who, extra, headers, message in cases:
        r = post(who, headers=headers, **form, **extra)
        assert r.status_code == 403 and message in r.text, (extra, headers)
    assert fresh.app("web").get("run-once") is None
    same_site = post(c, headers={"Origin": f"http://{fresh.http}"}, **form, csrf=t)
    assert same_site.status_code == 303 and fresh.app("web")["run-once"] is True


def test_bad_action_forms_get_errors_naming_the_field(live: PatrolProcess) -> None:
    c = client(live)
    t = token(c)
    r = post(c, group="group", id="web", action="explode", csrf=t)
    assert r.status_code == 400
    assert messages(r.text) == [
        "group: must be app or service (got &#39;group&#39;)",
        "action: must be one of enable, disable, restart, runonce-on, runonce-off (got &#39;explode&#39;)",
    ]
    r = post(c, group="app", id="ghost", action="enable", csrf=t)
    assert r.status_code == 400 and messages(r.text) == ["id: there is no app with the id &#39;ghost&#39;"]
    r = c.post("/", content=b'{"toggle": 2}', headers={"content-type": "application/json"})
    assert r.status_code == 415 and "content-type: must be application/x-www-form-urlencoded" in r.text
    r = c.post("/", content=b"csrf=" + b"x" * 20000, headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    r = c.post("/", content=b"csrf=\xff\xfe", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "body: not a valid form" in r.text
    r = post(c, group="app", id="web", action="enable", csrf=t, next="//evil.example/")
    assert r.status_code == 303 and r.headers["location"] == "/app/web"  # never off-site


def test_items_with_a_secret_need_it_and_never_show_it(fresh: PatrolProcess) -> None:
    c = client(fresh)
    t = token(c)
    post(c, group="app", id="sec", action="runonce-on", csrf=t, next="/")
    assert "it has a secret, enter it in the secret field" in c.get("/").text
    post(c, group="app", id="sec", action="runonce-on", csrf=t, secret="wrong", next="/")
    assert "Could not turn run once on for app &#34;Secretive&#34; (sec): Secret Invalid" in c.get("/").text
    assert fresh.app("sec").get("run-once") is None
    post(c, group="app", id="sec", action="runonce-on", csrf=t, secret="s3cret", next="/")
    assert fresh.app("sec")["run-once"] is True
    for path in ("/", "/app/sec", "/gui/state.json"):
        assert "s3cret" not in c.get(path).text


# -- logs --------------------------------------------------------------------------------


def test_last_n_lines_of_the_current_logs(live: PatrolProcess) -> None:
    c = client(live)
    text = c.get("/stdout/?group=app&id=web&last=3").text
    lines = text.splitlines()
    assert len(lines) == 3 and all(re.fullmatch(r"line \d+", line) for line in lines)
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], numbers[0] + 3))
    assert c.get("/stderr/?group=app&id=web").text == "testapp web stderr line\n"
    whole = c.get("/stdout/?group=app&id=web")
    assert whole.headers["content-type"] == "text/plain; charset=utf-8"
    assert whole.text.startswith("testapp web started, pid")
    page = c.get("/app/web/log/stdout?last=2").text
    body = re.search(r'<pre class="log" id="log"[^>]*>(.*?)</pre>', page, re.S)
    assert body and len(body.group(1).splitlines()) == 2


def test_merged_logs_are_one_file_for_both_streams(live: PatrolProcess) -> None:
    c = client(live)
    wait_for(lambda: "stderr line" in c.get("/stdout/?group=app&id=merged").text, 10, "merged output")
    both = c.get("/stdout/?group=app&id=merged").text
    assert both.startswith("testapp merged started") and "testapp merged stderr line\n" in both
    assert c.get("/stderr/?group=app&id=merged").text == both
    page = c.get("/app/merged/log/merged").text
    assert "stdout + stderr of Merged" in page and "testapp merged stderr line" in page
    assert c.get("/app/merged/log/stdout").status_code == 200  # the same file
    assert 'href="/app/merged/log/merged"' in c.get("/app/merged").text
    assert "stdmerge.log" in c.get("/app/merged").text  # the recent runs list


@pytest.mark.parametrize("query, status, message", [
    ("group=app&id=web&last=abc", 400, "last: must be a whole number of lines from 1 to 10000 (got 'abc')"),
    ("group=app&id=web&last=0", 400, "last: must be a whole number of lines from 1 to 10000 (got '0')"),
    ("group=app&id=web&last=10001", 400, "last: must be a whole number of lines from 1 to 10000"),
    ("group=service&id=fakesvc", 400, "group: must be app, only apps have logs (got 'service')"),
    ("group=app&id=ghost", 404, "Unknown App: there is no app with the id 'ghost'"),
    ("group=app&id=web&lines=3", 400, "lines: unknown query parameter (known: group, id, last, secret)"),
    ("group=app&id=sec", 403, "Secret Invalid"),
    ("group=app&id=sec&secret=nope", 403, "Secret Invalid"),
])
def test_log_url_errors_name_the_parameter(live: PatrolProcess, query: str, status: int, message: str) -> None:
    code, text = raw_get(live, f"/stdout/?{query}")
    assert code == status and message in text


def test_follow_returns_what_was_appended_since_an_offset(live: PatrolProcess) -> None:
    c = client(live)
    page = c.get("/app/web/log/stdout?last=1").text
    relative = re.search(r'data-file="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    offset = int(re.search(r'data-offset="(\d+)"', page).group(1))  # type: ignore[union-attr]
    chunk = wait_for(lambda: (b := c.get("/app/web/follow", params={"file": relative, "offset": offset,
                                                                     "stream": "stdout"}).json())["text"] and b,
                     10, "new output")
    assert re.fullmatch(r"(line \d+\n)+", chunk["text"]) and chunk["offset"] > offset
    assert chunk["current"] == relative and chunk["reset"] is False
    beyond = c.get("/app/web/follow", params={"file": relative, "offset": 10**12}).json()
    assert beyond["reset"] is True and beyond["text"].startswith("testapp web started")
    bad = c.get("/app/web/follow", params={"file": relative, "offset": "-1"})
    assert bad.status_code == 400 and bad.json() == {"errors": ["offset: must be a non-negative integer (got '-1')"]}
    outside = c.get("/app/web/follow", params={"file": "../../patrol.json", "offset": 0})
    assert outside.status_code == 404


def test_log_browser_never_leaves_the_log_directory(live: PatrolProcess) -> None:
    (live.workdir / "outside.txt").write_text("top secret\n")
    logs = live.workdir / "logs"
    (logs / "escape").symlink_to(live.workdir)
    (logs / "escape-file.log").symlink_to(live.workdir / "outside.txt")
    (logs / "inside.log").symlink_to(logs / "plain.log")
    (logs / "plain.log").write_text("plain\n")
    c = client(live)
    listing = c.get("/app/web/logs/").text
    assert "escape" not in listing  # links that would leave the directory are not even shown
    assert 'href="/app/web/logs/inside.log"' in listing
    assert c.get("/app/web/logs/inside.log?raw=1").text == "plain\n"
    for path in ("/app/web/logs/../../outside.txt", "/app/web/logs/%2e%2e/%2e%2e/outside.txt",
                 "/app/web/logs/..%2F..%2Foutside.txt", "/app/web/logs//etc/passwd",
                 "/app/web/logs/escape/outside.txt", "/app/web/logs/escape-file.log?raw=1",
                 "/app/web/logs/%00", "/logs/../outside.txt?group=app&id=web"):
        status, text = raw_get(live, path)
        assert status in (404, 308) and "top secret" not in text and "root:" not in text, path
        if status == 308:  # the original's /logs/ URL moves to the browser, which refuses it
            assert c.get(path, follow_redirects=True).status_code == 404


def test_log_browser_links_are_escaped_and_lead_to_the_file(live: PatrolProcess) -> None:
    logs = live.workdir / "logs"
    odd = 'a b?c#d&e"f<g>.log'
    (logs / odd).write_text("odd\n")
    (logs / "sub dir").mkdir()
    (logs / "sub dir" / "x.log").write_text("x\n")
    c = client(live)
    listing = c.get("/app/web/logs/").text
    assert 'href="/app/web/logs/a%20b%3Fc%23d%26e%22f%3Cg%3E.log"' in listing
    assert "a b?c#d&amp;e&#34;f&lt;g&gt;.log</a>" in listing
    assert c.get("/app/web/logs/a%20b%3Fc%23d%26e%22f%3Cg%3E.log?raw=1").text == "odd\n"
    sub = c.get("/app/web/logs/sub%20dir/").text
    assert 'href="/app/web/logs/sub%20dir/x.log"' in sub and 'href="/app/web/logs/"' in sub
    assert c.get("/app/web/logs", follow_redirects=False).headers["location"] == "/app/web/logs/"
    moved = c.get("/logs/sub%20dir/?group=app&id=web", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["location"] == "/app/web/logs/sub%20dir/"


def test_logs_of_an_app_with_a_secret_open_with_it_only(live: PatrolProcess) -> None:
    c = client(live)
    t = token(c)
    locked = c.get("/app/sec/log/stdout")
    assert locked.status_code == 403 and 'action="/unlock"' in locked.text
    assert c.get("/app/sec/logs/").status_code == 403
    assert c.get("/app/sec/follow", params={"file": "x", "offset": 0}).status_code == 403
    r = post(c, "/unlock", id="sec", secret="wrong", csrf=t, next="/app/sec/log/stdout")
    assert r.status_code == 303 and c.get("/app/sec/log/stdout").status_code == 403
    r = post(c, "/unlock", id="sec", secret="s3cret", csrf=t, next="/app/sec/log/stdout")
    assert r.status_code == 303 and "patrol_unlock_app_sec" in r.headers["set-cookie"]
    assert "s3cret" not in r.headers["set-cookie"]
    opened = c.get("/app/sec/log/stdout")
    assert opened.status_code == 200 and "testapp sec started" in opened.text
    assert "Logs and key/values of app &#34;Secretive&#34; (sec) are open" in opened.text
    # the original's ?secret= still works for scripts, and a fresh client stays locked
    fresh = httpx.Client(base_url=f"http://{live.http}")
    assert fresh.get("/stdout/?group=app&id=sec&secret=s3cret").text.startswith("testapp sec started")
    assert fresh.get("/app/sec/log/stdout").status_code == 403
    assert post(client(live), "/unlock", id="sec", secret="s3cret").status_code == 403  # no token: refused


def test_head_requests_and_unknown_routes(live: PatrolProcess) -> None:
    c = client(live)
    assert c.head("/").status_code == 200
    assert c.head("/app/web/log/stdout").status_code == 200
    assert c.get("/app/web/log/bogus").status_code == 404
    assert c.get("/app/web/log/merged").status_code == 404  # std-merge is off: no merged log
    assert c.get("/static/nope.css").status_code == 404



def test_the_current_log_page_waits_out_a_moment_without_its_file(patrol: PatrolFactory) -> None:
    """Right after a start (a writer thread creates the file) and at each rotation (renamed
    away, then made again) a running app's current log file is missing for a moment: the
    page waits for it instead of answering 404 (a browser test met that 404 under load)."""
    p = patrol.start(patrol.config(apps={"quiet": patrol.app(1, name="Quiet")}), env=UNITTEST_ENV)
    p.running_pid("quiet", ready=True)
    current = wait_for(lambda: next((p.workdir / "logs").rglob("[0-9]*.stdout.log"), None), 10, "the log file")
    aside = current.with_name(current.name + ".aside")
    current.rename(aside)  # a rotation's window, held open
    with httpx.Client(base_url=f"http://{p.http}", timeout=30) as client, ThreadPoolExecutor(1) as pool:
        answer = pool.submit(client.get, "/app/quiet/log/stdout")
        wait([answer], timeout=0.3)  # a 404 at once would come within this: the rename back is later
        aside.rename(current)
        assert answer.result().status_code == 200
