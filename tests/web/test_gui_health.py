"""Readiness and start order in the web GUI against a live ``patrol run``: the state
badge says ready, running (not ready yet) or waiting; the detail page shows the
probes' last answers and why an item waits."""

from __future__ import annotations

import html
import re

import httpx

from patrol.testing import PatrolFactory, wait_for


def test_the_gui_shows_readiness_the_probes_answers_and_why_an_item_waits(patrol: PatrolFactory) -> None:
    apps = {
        "ok": patrol.app(1, readiness={"exec": ["true"], "period": 0.2}),
        "probed": patrol.app(1, readiness={"exec": ["false"], "period": 0.2}),
        "waiter": patrol.app(1, **{"depends-on": {"probed": "ready"}}),
    }
    p = patrol.start(patrol.config(apps=apps))
    wait_for(lambda: p.app("ok").get("ready") and p.app("probed").get("readiness"), 15, "the first answers")
    message = p.app("probed")["readiness"]["message"]
    c = httpx.Client(base_url=f"http://{p.http}", timeout=10)
    page = c.get("/").text
    assert re.search(r'data-key="app/ok"[^>]*data-state="ready"', page)
    assert re.search(r'data-key="app/probed"[^>]*data-state="running"', page)
    assert re.search(r'data-key="app/waiter"[^>]*data-state="waiting"', page)
    assert html.escape("waiting for probed: ready") in page
    detail = c.get("/app/probed").text
    assert 'data-field="ready">no<' in detail
    assert f'data-field="health">readiness: failing ({html.escape(message)})<' in detail
    assert 'data-field="ready">yes<' in c.get("/app/ok").text
    live = c.get("/gui/state.json").json()["items"]
    assert live["app/ok"]["ready"] == "yes" and live["app/probed"]["health"].startswith("readiness: failing")
