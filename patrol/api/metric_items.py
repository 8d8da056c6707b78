"""The per-item metrics: which there are, and what each item shows (read once per scrape).

Read from the engine's read side (:mod:`patrol.engine.readside`), the same one the API
renders: states are the runners' :class:`~patrol.plugin.states.ItemState`, CPU and
memory come from the one sampler (:mod:`patrol.engine.cpu`). Written out by
:mod:`patrol.api.metrics_text` (fast) and :mod:`patrol.api.metrics` (through
``prometheus_client``); this module needs neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple

from patrol.plugin.model import AppConfig
from patrol.plugin.states import APP_STATES, LIVE_STATES, SERVICE_STATES, ItemState
from patrol.util.steps import Steps

if TYPE_CHECKING:
    from patrol.engine.readside import ItemView, Reader

#: items read per step (one /proc read each for a running app: ~15 us)
SCRAPE_STEP = 100


class ItemRow(NamedTuple):
    """One item, as the metrics show it (read once per scrape). A named tuple: built
    1,000 times per scrape, it costs a fifth of a frozen dataclass (0.4 us, not 2)."""

    group: str
    id: str
    name: str
    keepalive: str
    state: str
    states: tuple[str, ...]  # one ``patrol_item_state`` series each
    up: int
    ready: int
    restarts: int
    start_failures: int
    started: float | None
    exit_code: int | None
    cpu_seconds: float | None
    rss: int | None
    ping_age: float | None


#: the states in which an item counts as up: it runs, ready or not
UP_STATES = LIVE_STATES
GROUP_STATES = {"app": APP_STATES, "service": SERVICE_STATES}
#: the names of each group's states, read once (an enum's ``.value`` is slow to read)
_STATE_NAMES = {group: tuple(s.value for s in states) for group, states in GROUP_STATES.items()}
_ALL_STATE_NAMES = tuple(s.value for s in ItemState)


@dataclass(frozen=True)
class Family:
    """One per-item metric: its name as exposed, type, help, and how a row gives its value."""

    name: str
    kind: str  # "gauge" or "counter" (a counter's name ends in _total)
    help: str
    value: Callable[[ItemRow], float | None]  # None: no sample for this item


ITEM_FAMILIES = (
    Family("patrol_item_up", "gauge", "1 while the item runs, else 0.", lambda r: r.up),
    Family("patrol_item_ready", "gauge", "1 while the item runs and is ready, else 0.", lambda r: r.ready),
    Family("patrol_item_restarts_total", "counter", "Restarts since Patrol started (the first start is not one).",
           lambda r: r.restarts),
    Family("patrol_item_start_failures_total", "counter",
           "Starts that failed: the spawn or start command failed, or it ended before it was seen running.",
           lambda r: r.start_failures),
    Family("patrol_item_start_time_seconds", "gauge", "When the running instance started (Unix time).",
           lambda r: r.started),
    Family("patrol_item_last_exit_code", "gauge",
           "Exit code of the app's last process; 128+N when signal N killed it.", lambda r: r.exit_code),
    Family("patrol_item_cpu_seconds_total", "counter", "CPU time (user + system) of the app's running process.",
           lambda r: r.cpu_seconds),
    Family("patrol_item_resident_memory_bytes", "gauge", "Resident memory of the app's running process.",
           lambda r: r.rss),
    Family("patrol_item_last_ping_age_seconds", "gauge",
           "Seconds since the last ping of an app kept alive by pings.", lambda r: r.ping_age),
)
STATE_HELP = "The item's state: 1 on the current one, 0 on the others (one series per state)."
INFO_HELP = "1 for every item; its name and keepalive method are labels (join on group and id)."


def exit_code(runner: "ItemView") -> int | None:
    """The last exit as a shell reports it: the code, or 128+N after signal N."""
    last = runner.last_exit if runner.group == "app" else None
    if last is None:
        return None
    return 128 + last.signal if last.signal is not None else last.code


def states_of(group: str, state: str) -> tuple[str, ...]:
    """Every state of the item's group, and the current one if the group's list lacks it."""
    states = _STATE_NAMES.get(group, _ALL_STATE_NAMES)
    return states if state in states else (*states, state)


def row_of(runner: "ItemView", reader: "Reader", wall: float) -> ItemRow:
    """What the metrics show of one item, read once."""
    st = runner.state
    phase = runner.phase
    state = phase.value
    up = 1 if phase in UP_STATES else 0
    is_app = runner.group == "app"
    usage = reader.cpu.usage(st.pid) if is_app and st.pid and st.running else None
    lastseen = st.lastseen if is_app and runner.ping_transport is not None else None
    keepalive = runner.config.keepalive if isinstance(runner.config, AppConfig) else ""
    return ItemRow(
        group=runner.group, id=runner.id, name=runner.config.name, keepalive=keepalive,
        state=state, states=states_of(runner.group, state), up=up, ready=ready(runner, up),
        restarts=runner.restarts, start_failures=runner.start_failures,
        started=st.started if st.running else None, exit_code=exit_code(runner),
        cpu_seconds=usage.cpu_seconds if usage is not None else None,
        rss=usage.rss if usage is not None else None,
        ping_age=max(0.0, wall - lastseen) if lastseen is not None else None,
    )


def ready(runner: "ItemView", up: int) -> int:
    """1 when the item runs and is ready: the API's ``ready`` (every readiness source it has
    says so; an item without one is ready while it runs)."""
    return 1 if up and runner.ready else 0


async def item_rows(reader: "Reader", steps: Steps | None = None) -> list[ItemRow]:
    """Every item's row, read in steps that give the loop a turn (one /proc read each)."""
    steps = steps or Steps(SCRAPE_STEP)
    wall = reader.wall()
    rows = []
    for runner in reader.runners():
        await steps.take(1)
        rows.append(row_of(runner, reader, wall))
    return rows
