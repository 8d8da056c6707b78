"""Logging in to a Patrol with ``http.auth`` in a real browser (headless Chromium).

What an operator does: open the dashboard, land on the login form, get the token wrong,
then right, see the page update live, be sent back to the form when the session ends,
log out. The session cookie must be out of
reach of scripts (HttpOnly), and the pages must run without a console error (the login
form and the logout button live within the Content-Security-Policy too).
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from patrol.testing import PatrolFactory, PatrolProcess, wait_for

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

pytestmark = pytest.mark.browser

TOKEN = "browser-" + os.urandom(12).hex()
WAIT = 15_000


@pytest.fixture
def secured(patrol: PatrolFactory) -> PatrolProcess:
    token = patrol.tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    config = patrol.config(apps={"web": patrol.app(1, name="Web")})
    config["http"]["auth"] = {"token-file": str(token)}
    p = patrol.start(config)
    p.headers = {"Authorization": f"Bearer {TOKEN}"}
    wait_for(lambda: p.app("web").get("pid"), 10, "web running")
    return p


def test_an_operator_logs_in_watches_and_logs_out(browser: Any, secured: PatrolProcess) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "401" not in m.text else None)
    base = f"http://{secured.http}"

    page.goto(f"{base}/app/web")
    assert re.fullmatch(rf"{re.escape(base)}/login\?next=/app/web", page.url)
    expect(page.get_by_role("heading", name="Log in to Patrol")).to_be_visible()
    page.get_by_label("Token").fill("not-the-token-xxxxxx")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("The token is wrong.")

    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/app/web")
    expect(page.locator("[data-field='pid']")).to_have_text(str(secured.app("web")["pid"]))
    assert page.evaluate("document.cookie").find("patrol_session") == -1  # HttpOnly: no script sees it
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["patrol_session"]["httpOnly"] and cookies["patrol_session"]["sameSite"] == "Strict"
    expect(page.locator("#connection")).to_have_text("Live")  # the live updates got through

    context.clear_cookies()  # the session ends (expiry, a new token): the live page goes to the login form
    # at its next request: it follows the event stream, so that is the 15 s re-read, or the
    # operator coming back to the tab (as here)
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_url(re.compile(rf"{re.escape(base)}/login\?next="))
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/app/web")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{base}/login")
    page.goto(f"{base}/")
    assert page.url.startswith(f"{base}/login")
    context.close()
    assert problems == []
