"""The web GUI in a real browser (headless Chromium) against a live ``patrol run``.

What an operator does: watch the dashboard, disable / enable / restart an app and a
service, read the last lines of a log and follow it while the app prints. Plus: hostile
names, key/values, log lines and file names stay text, and the pages run without a
single console error (so the Content-Security-Policy never blocks Patrol's own code).

Screenshots of the dashboard and a detail page are written to the test's temp dir;
with ``PATROL_DOCS_SCREENSHOTS=1`` the two the README shows are also copied to ``docs/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from patrol.testing import UNITTEST_ENV, PatrolFactory, PatrolProcess, pid_alive, wait_for

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC_SHOTS = ("dashboard.png", "detail.png")  # the ones the README shows
HOSTILE = """<script>window.__pwned=1</script>"'><img src=x onerror="window.__pwned=2">"""
FAKE_INITD = """#!/bin/sh
# A fake init script: "running" is a file beside it.
state="$(dirname "$0")/$(basename "$0").running"
case "$1" in
    status) [ -e "$state" ] && exit 0; exit 3 ;;
    start|restart) touch "$state" ;;
    stop) rm -f "$state" ;;
esac
"""
WAIT = 15_000  # ms: Playwright's deadline for what the page must show


@pytest.fixture
def problems() -> list[str]:
    """Console errors, page errors and foreign requests of the test's page."""
    return []


@pytest.fixture
def page(browser: Any, problems: list[str]) -> Iterator[Any]:
    """A fresh page; any console error, page error or foreign request fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(WAIT)
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"unexpected {d.type} dialog: {d.message}"), d.dismiss()))
    # every request must go to Patrol itself
    page.on("request", lambda r: None if re.match(r"https?://127\.0\.0\.1:\d+/", r.url)
            else problems.append(f"request to another host: {r.url}"))
    yield page
    context.close()
    assert problems == []


def fake_service(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    directory = tmp_path / "initd"
    directory.mkdir()
    script = directory / "fakesvc"
    script.write_text(FAKE_INITD)
    script.chmod(0o755)
    service = {"name": "Fake service", "service": "fakesvc", "management": "initd",
               "initd-directory": str(directory)}
    return service, directory / "fakesvc.running"


def url(patrol: PatrolProcess, path: str = "/") -> str:
    return f"http://{patrol.http}{path}"


def row(page: Any, key: str) -> Any:
    return page.locator(f'tr[data-key="{key}"]')


def confirm(page: Any) -> None:
    """Accept Patrol's own confirmation dialog (a <dialog>, not window.confirm)."""
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    dialog.locator("#confirm-ok").click()


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a real rendering, not a blank page
    if os.environ.get("PATROL_DOCS_SCREENSHOTS") == "1" and name in DOC_SHOTS:
        DOCS.mkdir(exist_ok=True)
        shutil.copy(path, DOCS / name)
    return path


def test_dashboard_disable_enable_restart_and_service_toggles(patrol: PatrolFactory, page: Any,
                                                              tmp_path: Path) -> None:
    service, running_file = fake_service(tmp_path)
    config = patrol.config(
        apps={
            "web": patrol.app(1, name="Web frontend", keyvalue={"owner": "ops", "port": 8080},
                              env=["TESTAPP_PRINT_EVERY=1"]),
            "worker": patrol.app(1, name="Queue worker", secret="hunter2", **{
                "pid-path": "worker.pid", "log-directory": "logs-worker"}),
            "flaky": patrol.app(1, name="Flaky job", env=["TESTAPP_EXIT=3"], **{
                "pid-path": "flaky.pid", "log-directory": "logs-flaky", "start-limit": 3, "backoff-base": 0.05}),
            "nightly": patrol.app(1, name="Nightly report", disabled=True, **{
                "pid-path": "nightly.pid", "log-directory": "logs-nightly"}),
        },
        services={"fakesvc": service},
    )
    p = patrol.start(config, env=UNITTEST_ENV)
    web_pid = wait_for(lambda: p.app("web").get("pid"), 10, "web to run")
    wait_for(lambda: p.app("flaky").get("state") == "given-up", 10, "flaky to give up")
    wait_for(running_file.exists, 10, "the fake service to be started")

    page.goto(url(p))
    web = row(page, "app/web")
    expect(web.locator("[data-field=label]")).to_have_text("running")
    expect(web.locator("[data-field=pid]")).to_have_text(str(web_pid))
    expect(row(page, "app/flaky").locator("[data-field=label]")).to_have_text("given up")
    expect(row(page, "app/nightly").locator("[data-field=label]")).to_have_text("disabled")
    expect(row(page, "service/fakesvc").locator("[data-field=label]")).to_have_text("running")
    expect(page.locator("#connection")).to_have_text("Live")
    expect(web.locator("[data-field=cpu]")).to_have_text(re.compile(r"^\d+\.\d%$"))  # from the 2nd reading on
    expect(web.locator("[data-field=memory]")).to_have_text(re.compile(r"^\d+\.\d MiB$"))
    screenshot(page, tmp_path, "dashboard.png")

    # Disable: a confirmation, the result message, the row goes "disabled", the process is gone
    web.get_by_role("button", name="Disable").click()
    confirm(page)
    expect(page.locator(".flash.ok")).to_contain_text('Disabled app "Web frontend" (web)')
    web = row(page, "app/web")
    expect(web.locator("[data-field=label]")).to_have_text("disabled")
    expect(web.locator("[data-field=pid]")).to_have_text("—")
    wait_for(lambda: not pid_alive(web_pid), 10, f"pid {web_pid} to be gone")
    assert p.app("web").get("disabled") is True

    # Enable: running again with a new pid, shown live
    web.get_by_role("button", name="Enable").click()
    expect(page.locator(".flash.ok")).to_contain_text('Enabled app "Web frontend" (web)')
    new_pid = wait_for(lambda: p.app("web").get("pid"), 10, "web to run again")
    assert new_pid != web_pid
    expect(row(page, "app/web").locator("[data-field=pid]")).to_have_text(str(new_pid))

    # Restart: another new pid (once the app handles SIGUSR2: the live row shows a new pid
    # as soon as it runs, before the test app has installed its signal handlers)
    wait_for(lambda: p.app_log_has(f"started, pid {new_pid},"), 10, "web to handle signals")
    row(page, "app/web").get_by_role("button", name="Restart").click()
    confirm(page)
    expect(page.locator(".flash.ok")).to_contain_text('Restart of app "Web frontend" (web) requested')
    restarted = wait_for(lambda: (p.app("web").get("pid") or new_pid) != new_pid and p.app("web")["pid"],
                         10, "a restarted web")
    expect(row(page, "app/web").locator("[data-field=pid]")).to_have_text(str(restarted))
    expect(row(page, "app/web").locator("[data-field=restarts]")).to_have_text("2")
    assert not pid_alive(new_pid)

    # An app with a secret: without it nothing changes, and the page says why
    worker = row(page, "app/worker")
    worker_pid = p.app("worker")["pid"]
    worker.get_by_label("Secret of Queue worker").fill("wrong")
    worker.get_by_role("button", name="Run once").click()
    expect(page.locator(".flash.error")).to_contain_text("Secret Invalid")
    assert p.app("worker").get("run-once") is None and p.app("worker")["pid"] == worker_pid

    # A service: disable stops it (its status turns false), enable starts it
    fakesvc = row(page, "service/fakesvc")
    fakesvc.get_by_role("button", name="Disable").click()
    confirm(page)
    expect(page.locator(".flash.ok")).to_contain_text('Disabled service "Fake service" (fakesvc)')
    expect(row(page, "service/fakesvc").locator("[data-field=label]")).to_have_text("disabled")
    wait_for(lambda: not running_file.exists(), 10, "the fake service to be stopped")
    row(page, "service/fakesvc").get_by_role("button", name="Enable").click()
    expect(row(page, "service/fakesvc").locator("[data-field=label]")).to_have_text("running")
    assert running_file.exists()

    # Filtering (live, no reload): only the disabled item remains
    page.get_by_label("State").select_option("disabled")
    expect(page.locator("#count")).to_have_text("1 of 5 shown")
    expect(row(page, "app/nightly")).to_be_visible()
    expect(row(page, "app/web")).to_be_hidden()
    assert "state=disabled" in page.url

    # The detail page: configuration (secret masked), key/values, history with the exits
    page.goto(url(p, "/app/web"))
    expect(page.locator("h1")).to_contain_text("Web frontend")
    config_table = page.locator("table.config")
    expect(config_table).to_contain_text("TESTAPP_PRINT_EVERY=1")
    expect(page.locator("table.kv")).to_contain_text("owner")
    history = page.locator("table.history tbody tr")
    expect(history).to_have_count(2)
    expect(history.first.locator('td[data-label="Exit"]')).to_have_text("12")  # SIGUSR2: the restart
    expect(history.first.locator('td[data-label="Reason"]')).to_have_text("restart")
    expect(history.nth(1).locator('td[data-label="Exit"]')).to_have_text("10")  # SIGUSR1: disabled
    expect(history.nth(1).locator('td[data-label="Flags"]')).to_have_text("disabled")
    screenshot(page, tmp_path, "detail.png")
    page.goto(url(p, "/app/worker"))
    expect(page.locator("table.config")).to_contain_text("(set)")
    assert "hunter2" not in page.content()

    # On a phone: rows become cards, nothing is wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/app/web", "/"):
        page.goto(url(p, path))
        expect(page.locator("#connection")).to_have_text("Live")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    screenshot(page, tmp_path, "dashboard-phone.png")


def test_logs_tail_and_live_follow(patrol: PatrolFactory, page: Any, tmp_path: Path) -> None:
    config = patrol.config(apps={"printer": patrol.app(1, name="Printer", env=["TESTAPP_PRINT_EVERY=0.1"])})
    p = patrol.start(config, env=UNITTEST_ENV)
    wait_for(lambda: p.app("printer").get("pid"), 10, "printer to run")
    wait_for(lambda: "line 5\n" in p.request("GET", "/stdout/?group=app&id=printer")[1], 10, "5 lines")

    page.goto(url(p, "/app/printer"))
    page.locator('a[href="/app/printer/log/stdout"]').click()
    page.get_by_label("Lines").fill("3")
    page.get_by_role("button", name="Show").click()
    log = page.locator("#log")
    lines = log.inner_text().strip().splitlines()
    assert len(lines) == 3 and all(re.fullmatch(r"line \d+", line) for line in lines), lines
    last = int(lines[-1].split()[1])
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == [last - 2, last - 1, last]

    page.get_by_role("button", name="Follow").click()
    expect(page.get_by_role("button", name="Stop following")).to_have_attribute("aria-pressed", "true")
    expect(log).to_contain_text(f"line {last + 10}\n")
    screenshot(page, tmp_path, "log.png")
    followed = [int(n) for n in re.findall(r"line (\d+)", log.inner_text())]
    assert followed == list(range(last - 2, followed[-1] + 1))  # nothing lost, nothing twice

    # a restart while following: the viewer moves on to the new instance's log
    old_pid = p.app("printer")["pid"]
    status, _ = p.api(group="app", id="printer", toggle=3)
    assert status == 200
    expect(log).to_contain_text("a new instance started")
    wait_for(lambda: p.app("printer").get("pid") not in (None, old_pid), 10, "a new instance")
    expect(log).to_contain_text(f"testapp printer started, pid {p.app('printer')['pid']}")


def test_live_follow_across_rotations_shows_every_line_once(patrol: PatrolFactory, page: Any) -> None:
    """The log is renamed to .1 every ~100 lines while the page follows it: the viewer
    finishes each old file before the new one (before: "the file was truncated", lines lost)."""
    app = patrol.app(1, name="Chatty", env=["TESTAPP_PRINT_EVERY=0.002"],
                     **{"log-max-bytes": 1024, "log-max-files": 100, "log-max-total-bytes": 0})
    p = patrol.start(patrol.config(apps={"chatty": app}), env=UNITTEST_ENV)
    wait_for(lambda: p.app("chatty").get("pid"), 10, "chatty to run")
    page.goto(url(p, "/app/chatty/log/stdout?last=1&follow=1"))
    log = page.locator("#log")
    first = int(re.search(r"line (\d+)", wait_for(lambda: re.search(r"line \d+", log.inner_text())
                                                    and log.inner_text(), 10, "a line")).group(1))
    expect(log).to_contain_text(f"line {first + 1500}\n", timeout=30_000)  # about 15 rotations
    followed = [int(n) for n in re.findall(r"line (\d+)", log.inner_text())]
    assert followed == list(range(first, followed[-1] + 1))  # nothing lost, nothing twice
    assert "truncated" not in log.inner_text() and "removed before" not in log.inner_text()


def test_hostile_strings_render_inert(patrol: PatrolFactory, page: Any, tmp_path: Path) -> None:
    script = tmp_path / "hostile.sh"
    script.write_text("#!/bin/sh\n"
                      "echo '<script>window.__pwned=3</script> \"quoted\" &amp; <img src=x onerror=\"window.__pwned=4\">'\n"
                      "exec sleep 300\n")
    script.chmod(0o755)
    logs = tmp_path / "logs"
    logs.mkdir()
    evil_file = """<img src=x onerror="window.__pwned=6">'&.log"""
    (logs / evil_file).write_text("<script>window.__pwned=7</script>\n")
    config = patrol.config(apps={"evil": patrol.app(
        1, name=HOSTILE, binary="hostile.sh",
        keyvalue={"<script>window.__pwned=5</script>": "\"><img src=x onerror=window.__pwned=8>"})})
    p = patrol.start(config, env=UNITTEST_ENV)
    wait_for(lambda: "quoted" in p.request("GET", "/stdout/?group=app&id=evil")[1], 10, "the hostile line")

    def inert() -> None:
        assert page.evaluate("window.__pwned") is None
        assert page.locator("script:not([src])").count() == 0
        assert page.locator("img").count() == 0

    page.goto(url(p))
    expect(row(page, "app/evil").locator("td.name a").first).to_have_text(HOSTILE)
    inert()
    page.goto(url(p, "/app/evil"))
    expect(page.locator("h1")).to_contain_text(HOSTILE)
    expect(page.locator("table.kv")).to_contain_text("<script>window.__pwned=5</script>")
    expect(page.locator("table.kv")).to_contain_text('"\\"><img src=x onerror=window.__pwned=8>"')
    inert()
    page.goto(url(p, "/app/evil/log/stdout?follow=1"))
    expect(page.locator("#log")).to_contain_text("<script>window.__pwned=3</script>")
    inert()
    page.goto(url(p, "/app/evil/logs/"))
    link = page.get_by_role("link", name=evil_file)
    expect(link).to_be_visible()
    inert()
    link.click()  # the escaped link leads to that very file
    expect(page.locator("#log")).to_contain_text("<script>window.__pwned=7</script>")
    inert()
    # the confirmation dialog shows the name as text too; it works from the keyboard
    page.goto(url(p))
    row(page, "app/evil").get_by_role("button", name="Disable").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#confirm-text")).to_contain_text(HOSTILE)
    assert page.evaluate("document.activeElement.textContent") == "Cancel"  # the safe choice first
    page.keyboard.press("Escape")
    expect(page.locator("dialog#confirm")).to_be_hidden()
    expect(page.locator(".flash")).to_have_count(0)
    inert()
    assert p.app("evil").get("disabled") is None  # cancelled: nothing changed


def test_disconnected_state_is_shown_when_patrol_goes_away(patrol: PatrolFactory, page: Any,
                                                            problems: list[str]) -> None:
    config = patrol.config(apps={"web": patrol.app(1, name="Web")})
    p = patrol.start(config, env=UNITTEST_ENV)
    page.goto(url(p))
    expect(page.locator("#connection")).to_have_text("Live")
    p.terminate()
    expect(page.locator("#connection")).to_contain_text("Disconnected")
    expect(page.locator("body")).to_have_class(re.compile(r"\bdisconnected\b"))
    # the browser logs the refused polls and the stream cut by the stop; that, and only that, is expected
    problems[:] = [m for m in problems if "ERR_CONNECTION_REFUSED" not in m and "ERR_CONNECTION_RESET" not in m]


def test_a_crashing_apps_page_shows_why_and_no_page_overflows_a_phone(patrol: PatrolFactory, page: Any,
                                                                      tmp_path: Path) -> None:
    """The crash message sits in the previous instance's stderr (its current files are new):
    the detail page shows its tail and the history links each instance's two files. At
    390 px no page is wider than the screen."""
    crasher = tmp_path / "crasher"
    crasher.write_text('#!/bin/sh\necho "starting up"\necho "fatal: /etc/crasher.conf missing ($$)" >&2\nexit 3\n')
    crasher.chmod(0o755)
    apps = {"crasher": patrol.app(1, name="Crasher", binary="crasher", **{"backoff-base": 60, "backoff-max": 60}),
            "web": patrol.app(1, name="Web " + "frontend-with-a-long-name" * 3, env=["TESTAPP_PRINT_EVERY=0.2"])}
    p = patrol.start(patrol.config(apps=apps), env=UNITTEST_ENV)
    wait_for(lambda: p.app("crasher").get("history"), 10, "the crash")
    p.running_pid("web")
    # the dashboard counts states and filters by the words the API and the CLI use; each row links its logs
    page.goto(url(p, "/"))
    expect(page.locator("#state-counts")).to_have_text("1 running, 1 backoff")
    assert "backoff" in page.locator("#state-filter option").all_inner_texts()
    page.get_by_label("Filter").fill("backoff")
    expect(page.locator("#count")).to_have_text("1 of 2 shown")
    expect(row(page, "app/web")).to_be_hidden()
    page.get_by_label("Filter").fill("")
    row(page, "app/web").get_by_role("link", name=re.compile("^logs")).click()
    expect(page.locator("#log")).to_contain_text("testapp web started")

    page.goto(url(p, "/app/crasher"))
    previous = page.locator("section.previous")
    expect(previous).to_contain_text(re.compile(r"fatal: /etc/crasher\.conf missing \(\d+\)"))
    expect(previous).to_contain_text("exit code 3")
    assert "starting up" not in previous.inner_text()  # stderr only
    links = page.locator("table.history tbody tr").first.locator('td[data-label="Log"] a')
    expect(links).to_have_count(2)
    assert links.nth(1).get_attribute("href").endswith(".stderr.log")
    links.nth(1).click()
    expect(page.locator("#log")).to_contain_text("fatal: /etc/crasher.conf missing")

    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", "/app/crasher", "/app/web", "/app/web/log/stdout", "/app/web/logs/"):
        page.goto(url(p, path))
        wide = page.evaluate("""[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 390)
            .map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right))""")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, (path, wide)


def test_the_dashboard_follows_the_event_stream_instead_of_polling(patrol: PatrolFactory, page: Any) -> None:
    p = patrol.start(patrol.config(apps={"web": patrol.app(1, name="Web"), "db": patrol.app(1, name="DB")}))
    pid = p.running_pid("web", ready=True)
    requests: list[tuple[float, str]] = []
    page.on("request", lambda r: requests.append((time.monotonic(), r.url)))
    page.goto(url(p))
    expect(page.locator("#connection")).to_have_text("Live")  # not "Live · polling"
    expect(row(page, "app/web").locator("[data-field=pid]")).to_have_text(str(pid))
    os.kill(pid, signal.SIGKILL)
    new_pid = p.running_pid("web", other_than=pid)
    expect(row(page, "app/web").locator("[data-field=pid]")).to_have_text(str(new_pid))
    since = time.monotonic()
    wait_for(lambda: time.monotonic() - since > 3, 5, "three seconds of a connected page")  # the window looked at
    streams = [u for _, u in requests if "/gui/events" in u]
    polls = [t for t, u in requests if "/gui/state.json" in u]
    assert streams, requests
    # one re-read when the stream opened; no 1 s polls while it is connected
    assert len(polls) <= 1, [u for _, u in requests]
    assert not [t for t in polls if t > since]


def test_the_pages_poll_when_the_stream_is_not_available(patrol: PatrolFactory, page: Any,
                                                         problems: list[str]) -> None:
    p = patrol.start(patrol.config(apps={"web": patrol.app(1, name="Web")}))
    pid = p.running_pid("web", ready=True)
    page.route(re.compile(r".*/gui/events.*"), lambda route: route.abort())
    page.goto(url(p, "/app/web"))
    expect(page.locator("#connection")).to_have_text("Live · polling")
    os.kill(pid, signal.SIGKILL)
    new_pid = p.running_pid("web", other_than=pid)
    expect(page.locator("[data-field=pid]")).to_have_text(str(new_pid))
    # the browser logs the refused streams; that, and only that, is expected here
    problems[:] = [m for m in problems if "ERR_FAILED" not in m]
