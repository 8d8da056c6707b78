"""The fast writer of the per-item metrics is held byte for byte equal to
``prometheus_client``'s own rendering (``generate_latest``) of the same rows."""

from __future__ import annotations

import asyncio

from prometheus_client.exposition import generate_latest

from patrol.api import metrics_text
from patrol.api.metric_items import ItemRow
from patrol.api.metrics import registry_for


def row(item_id: str, name: str, state: str = "running", **values: object) -> ItemRow:
    base: dict[str, object] = dict(
        group="app", id=item_id, name=name, keepalive="pid-patrol", state=state,
        states=("running", "stopped", "backoff", "given-up"), up=1 if state == "running" else 0,
        ready=1 if state == "running" else 0, restarts=3, start_failures=0, started=1796065237.2878468,
        exit_code=None, cpu_seconds=0.04, rss=20410368, ping_age=None)
    base.update(values)
    return ItemRow(**base)  # type: ignore[arg-type]


ROWS = [
    row("web", "Web"),
    row("quote", 'Say "hi"\\ \n there', state="backoff", exit_code=137, cpu_seconds=None, rss=None, started=None),
    row("udp", "Ünïcode ✓", keepalive="udp", ping_age=2.5e-05, restarts=12345678901, start_failures=7),
    row("huge", "h", cpu_seconds=1e21, rss=0, started=0.0, exit_code=0, ping_age=1e-7, state="weird-new-state",
        states=("running", "weird-new-state")),
]


def fast(rows: list[ItemRow]) -> bytes:
    return b"".join(asyncio.run(metrics_text.items_text(rows)))


def test_the_fast_writer_writes_what_generate_latest_writes():
    assert fast(ROWS) == generate_latest(registry_for(ROWS))


def test_no_items_still_declares_every_family():
    assert fast([]) == generate_latest(registry_for([]))
    assert fast([]).count(b"# TYPE ") == 11


def test_many_items_in_steps_stay_equal():
    rows = [row(f"app{n}", f"App {n}", restarts=n, cpu_seconds=n / 7) for n in range(600)]
    assert fast(rows) == generate_latest(registry_for(rows))
