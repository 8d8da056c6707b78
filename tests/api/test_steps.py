"""Big answers are built in bounded steps (F20), and stay byte for byte what they were.

With 10,000 apps, ``/status/`` and the dashboard are seconds of work; done in one go,
they stalled the loop (and every ping) for that long. These tests drive the renderers
by hand, one step at a time (each ``send`` runs exactly one step), count the work done
in each step from outside, and compare the answer with the one-shot rendering. No
clock is involved: the bounds are counts.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Coroutine

import pytest
from starlette.requests import Request

from patrol.api.handler import STATUS_STEP
from patrol.config import Methods, parse_config
from patrol.web.gui import pages as pages_module
from patrol.web.gui import viewmodels as views
from patrol.web.gui.core import Gui
from patrol.web.gui.pages import DASHBOARD_STEP, LIVE_UNITS, ROW_UNITS, Pages
from patrol.api.wire import dumps
from patrol.plugin.loader import Plugins
from patrol.engine.item_state import HistoryRecord
from patrol.util.steps import Steps
from patrol.daemon import Daemon

NOW = 1_800_000_000.0
APPS = 1500
LONG = 10  # app-10: 700 history records, and a secret


def supervisor(apps: int = APPS, services: int = 40) -> Daemon:
    """A real supervisor (not running) over a real config, with history and key/values
    full of characters the original escaped (<>&), non-ASCII text and a secret item."""
    plugins = Plugins(strict=True)
    app = {"keepalive": 1, "binary": "b", "working-directory": "/srv", "log-directory": "l", "pid-path": "p"}
    doc = {
        "apps": {f"app-{i}": {**app, "name": f"App <{i}> & é", "disabled": i % 3 == 0,
                              "keyvalue": {"k<&>": [i, {"t": "ü\u2028"}]}, **({"secret": "s"} if i % 5 == 0 else {})}
                 for i in range(apps)},
        "services": {f"svc-{i}": {"name": f"Svc {i}", "service": f"svc{i}", "management": "service",
                                  "disabled": True} for i in range(services)},
        "history": 1000,
    }
    config, _ = parse_config(doc, Methods(plugins.keepalives, plugins.services))
    daemon = Daemon(config, plugins, wall=lambda: NOW)
    sup = daemon.supervisor
    sup.started = NOW - 3600
    for n, runner in enumerate(sup.runners()):
        for j in range(n % 9 if runner.id != f"app-{LONG}" else 700):  # one app (with a secret): a long history
            runner.state.add_history(HistoryRecord(
                instance_id=f"{n}-{j}", pid=100 + j, started=NOW - 60, lastseen=NOW - 50, stopped=NOW - 40,
                exit_code=j % 3, reason="exited <oops> & more", keyvalue={"j": j}))
    return daemon


def drive(coro: Coroutine[Any, Any, Any], each_step: Any) -> Any:
    """Run ``coro`` one step at a time without an event loop; ``each_step()`` after each."""
    while True:
        try:
            coro.send(None)
        except StopIteration as done:
            each_step()
            return done.value
        each_step()


def test_status_is_built_in_steps_of_bounded_work_byte_identical_to_one_go():
    daemon = supervisor()
    sup, api = daemon.supervisor, daemon.api
    expected = dumps(api.status())  # today's one-shot answer: TAB-indented, <>& escaped
    work: list[int] = [0]
    steps_seen: list[int] = []
    live_fields = api.live_fields  # asked once per item and answer, cached text or not

    def counting(runner: Any, **kwargs: Any) -> dict[str, Any]:
        work[0] += 1 + len(runner.state.history)
        return live_fields(runner, **kwargs)

    api.live_fields = counting  # type: ignore[method-assign]

    def step() -> None:
        steps_seen.append(work[0])
        work[0] = 0

    body = b"".join(drive(api.status_json(Steps(STATUS_STEP, seconds=float("inf"))), step))
    assert body == expected
    big = 1 + 700
    assert max(steps_seen) <= max(STATUS_STEP, big)
    assert sorted(steps_seen)[-2] <= STATUS_STEP  # only the one long-history app is a step of its own
    total = sum(1 + len(r.state.history) for r in sup.runners())
    assert len(steps_seen) >= (total - big) // STATUS_STEP  # it did yield, many times
    json.loads(body)  # and it is JSON


def test_status_of_an_empty_or_shutting_down_patrol_is_byte_identical():
    plugins = Plugins(strict=True)
    for doc in ({"services": {"s": {"name": "S", "service": "s", "management": "service"}}},
                {"apps": {"a": {"keepalive": 1, "name": "A", "binary": "b", "working-directory": "/srv",
                                "log-directory": "l", "pid-path": "p"}}}):
        config, _ = parse_config(doc, Methods(plugins.keepalives, plugins.services))
        daemon = Daemon(config, plugins, wall=lambda: NOW)
        sup, api = daemon.supervisor, daemon.api
        for started, shutting_down in ((None, False), (NOW, True)):
            sup.started, sup.shutting_down = started, shutting_down
            assert b"".join(drive(api.status_json(), lambda: None)) == dumps(api.status())


def body_of(response: Any) -> bytes:
    """The bytes a response sends (a streaming one is read through, without a loop)."""
    if not hasattr(response, "body_iterator"):
        return response.body

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.body_iterator])

    body = drive(read(), lambda: None)
    assert int(response.headers["content-length"]) == len(body)
    return body


def request(path: str = "/", query: bytes = b"", **path_params: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": query,
                    "headers": [(b"host", b"127.0.0.1:8421")], "scheme": "http", "server": ("127.0.0.1", 8421),
                    "client": ("127.0.0.1", 50000), "root_path": "", "path_params": path_params})


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of the dashboard's units of work: items built and rows rendered (a row
    calls Item.live once) -- counted from outside the renderer."""
    counts = {"item": 0, "live": 0}
    item, live = views.item, views.Item.live

    def counting_item(*args: Any) -> views.Item:
        counts["item"] += 1
        return item(*args)

    def counting_live(self: views.Item) -> dict[str, Any]:
        counts["live"] += 1
        return live(self)

    monkeypatch.setattr(views, "item", counting_item)
    monkeypatch.setattr(views.Item, "live", counting_live)
    return counts


@pytest.mark.parametrize("query", [b"", b"sort=state&order=desc&q=app-1"])
def test_the_dashboard_is_built_in_steps_of_bounded_work_and_renders_as_in_one_go(counted, monkeypatch, query):
    daemon = supervisor()
    sup, api = daemon.supervisor, daemon.api
    pages = Pages(Gui(sup, api))
    per_step: list[int] = []

    def step() -> None:
        per_step.append(counted["item"] * views.ITEM_UNITS + counted["live"] * ROW_UNITS)
        counted["item"] = counted["live"] = 0

    response = drive(pages.dashboard(request(query=query)), step)
    assert response.status_code == 200
    assert max(per_step) <= DASHBOARD_STEP and len(per_step) > len(sup.runners()) * ROW_UNITS // DASHBOARD_STEP
    html = body_of(response).decode()
    assert html.count("<tr data-key=") == len(sup.runners())
    assert "App &lt;12&gt; &amp; é" in html
    # in one go (one template call for every row, no step): the same page
    monkeypatch.setattr(pages_module, "ROW_CHUNK", 10**9)
    monkeypatch.setattr(pages_module, "DASHBOARD_STEP", 10**9)
    assert body_of(drive(pages.dashboard(request(query=query)), lambda: None)) == html.encode()


def test_the_live_state_is_built_in_steps_of_bounded_work_and_is_the_same_json(counted):
    daemon = supervisor()
    sup, api = daemon.supervisor, daemon.api
    gui = Gui(sup, api)
    pages = Pages(gui)
    per_step: list[int] = []

    def step() -> None:
        per_step.append(counted["item"] * views.ITEM_UNITS + counted["live"] * LIVE_UNITS)
        counted["item"] = counted["live"] = 0

    response = drive(pages.state_json(request("/gui/state.json")), step)
    assert max(per_step) <= DASHBOARD_STEP and len(per_step) > 3
    rows = views.items(sup, gui.stats)
    one_go = {"patrol": gui.patrol_info(), "items": {r.key: r.live() for r in rows}}
    assert response.body == json.dumps(one_go, ensure_ascii=False, separators=(",", ":")).encode()
    assert response.headers["content-type"] == "application/json"


def test_a_step_ends_when_its_budget_is_spent_and_never_splits_an_item():
    done: list[int] = []
    grouped: list[list[int]] = []

    async def work(steps: Steps) -> None:
        for units in (4, 4, 4, 30, 1, 9, 1):
            await steps.take(units)
            done.append(units)

    def step() -> None:
        grouped.append(done[:])
        done.clear()

    drive(work(Steps(10, seconds=float("inf"))), step)
    assert grouped == [[4, 4], [4], [30], [1, 9], [1]]  # 30 > 10: one item, a step of its own


def test_a_detail_page_with_a_long_history_is_built_in_steps_and_renders_as_in_one_go(monkeypatch):
    daemon = supervisor(apps=20, services=0)
    sup, api = daemon.supervisor, daemon.api
    gui = Gui(sup, api)
    pages = Pages(gui)
    template = gui.templates.get_template("detail_history_rows.html")
    render, rows = template.render, [0]
    per_step: list[int] = []

    def counting_render(**context: Any) -> str:
        rows[0] += len(context["history"])
        return render(**context)

    monkeypatch.setattr(template, "render", counting_render)

    def step() -> None:
        per_step.append(rows[0] * ROW_UNITS)
        rows[0] = 0

    page = request(f"/app/app-{LONG}", id=f"app-{LONG}")
    html = body_of(drive(pages.detail(page), step)).decode()
    assert sum(per_step) == 700 * ROW_UNITS and max(per_step) <= DASHBOARD_STEP
    assert html.count("<td data-label=\"Instance\">") == 700 and "exited &lt;oops&gt; &amp; more" in html
    monkeypatch.setattr(pages_module, "ROW_CHUNK", 10**9)
    monkeypatch.setattr(pages_module, "DASHBOARD_STEP", 10**9)
    assert body_of(drive(pages.detail(page), lambda: None)).decode() == html


def test_at_most_two_big_answers_are_built_at_once_and_all_are_answered():
    """Each holds megabytes until sent, and each one being built adds a step to every
    turn of the loop: five parallel requests are built two at a time."""
    daemon = supervisor(apps=600, services=0)
    api = daemon.api
    building: set[Any] = set()
    most = [0]

    class Tracking(Steps):  # asked before every item (take calls owed too)
        def owed(self, units: int = 1) -> bool:
            building.add(asyncio.current_task())
            most[0] = max(most[0], len(building))
            return super().owed(units)

    async def one() -> bytes:
        try:
            return b"".join(await api.status_json(Tracking(STATUS_STEP, seconds=float("inf"))))
        finally:
            building.discard(asyncio.current_task())

    async def five() -> list[bytes]:
        return await asyncio.gather(*(one() for _ in range(5)))

    answers = asyncio.run(five())
    assert most[0] == 2
    assert len(set(answers)) == 1 and answers[0] == dumps(api.status())
