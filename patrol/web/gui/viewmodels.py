"""What the pages show about an app or a service, computed once per request.

The same :class:`Item` feeds the server-rendered rows and the live JSON the browser
polls, so a row looks the same before and after its first live update. Strings are
formatted here, not in JavaScript: the browser only sets ``textContent``, which can
never turn a name or a log line into markup.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping
from urllib.parse import urlencode

from patrol.util.steps import Steps
from patrol.web.gui import fmt
from patrol.engine.cpu import CpuSampler
from patrol.plugin.states import ItemState

if TYPE_CHECKING:
    from patrol.engine.item_state import HistoryRecord
    from patrol.engine.readside import ItemView, Reader

#: state -> what the dashboard says, in the order a "state" sort uses
STATE_LABELS = {state.value: state.label for state in ItemState}


@dataclass
class Item:
    """One app or service as the GUI shows it."""

    group: str
    id: str
    name: str
    state: str
    note: str
    pid: int
    started: float | None
    uptime: float | None
    restarts: int
    last_exit: str
    cpu: float | None
    rss: int | None
    secret: bool
    disabled: bool
    run_once: bool
    instances: int
    ready: bool = False
    health: str = ""  # the probes' last answers, one line
    status_text: str = ""  # the app's own status line (sd_notify STATUS=)
    probed: bool = False  # it has a readiness or liveness probe
    readiness_source: bool = False  # a probe or its keepalive decides when it is ready
    #: a copy of a set of instances: the set's id and the copy's number ("" / 0 otherwise)
    copy_of: str = ""
    copy: int = 0

    @property
    def key(self) -> str:
        return f"{self.group}/{self.id}"

    @property
    def url(self) -> str:
        return f"/{self.group}/{self.id}"

    @property
    def label(self) -> str:
        return STATE_LABELS.get(self.state, self.state)

    def live(self) -> dict[str, Any]:
        """The fields a live update sets, already formatted for display."""
        return {
            "state": self.state,
            "label": self.label,
            "note": self.note,
            "pid": str(self.pid) if self.pid else "—",
            "uptime": fmt.duration(self.uptime) or "—",
            "started": fmt.local_time(self.started) or "—",
            "restarts": str(self.restarts),
            "last_exit": self.last_exit or "—",
            "cpu": cpu_text(self.cpu),
            "memory": fmt.size(self.rss) or "—",
            "instances": str(self.instances),
            "disabled": self.disabled,
            "run_once": self.run_once,
            "ready": "yes" if self.ready else "no",
            "health": self.health or "—",
            "status_text": self.status_text or "—",
        }


def cpu_text(percent: float | None) -> str:
    """A share of one core; "—" until two readings exist (the next live update)."""
    return f"{percent:.1f}%" if percent is not None else "—"


def item(runner: "ItemView", wall: float, stats: CpuSampler) -> Item:
    st = runner.state
    is_app = runner.group == "app"
    pid = st.pid if is_app else 0
    usage = stats.usage(pid) if pid and st.running else None
    last_exit = ""
    if is_app and runner.last_exit is not None:
        last_exit = str(runner.last_exit)
    elif not is_app and st.history:
        last_exit = st.history[-1].reason
    return Item(
        group=runner.group,
        id=runner.id,
        name=runner.config.name,
        state=runner.phase,
        note=_note(runner),
        pid=pid,
        started=st.started,
        uptime=wall - st.started if st.started is not None else None,
        restarts=runner.restarts,
        last_exit=last_exit,
        cpu=usage.cpu_percent if usage else None,
        rss=usage.rss if usage else None,
        secret=bool(runner.config.secret),
        disabled=st.disabled,
        run_once=st.run_once,
        instances=len(st.history),
        ready=runner.ready,
        health=health_line(runner),
        status_text=runner.health.status_text or "",
        probed=runner.config.readiness is not None or getattr(runner.config, "liveness", None) is not None,
        readiness_source=runner.health.has_source,
        copy_of=getattr(runner.config, "instance_of", ""),
        copy=getattr(runner.config, "instance", 0),
    )


def health_line(runner: "ItemView") -> str:
    """``readiness: ok (HTTP 200) · liveness: failing (HTTP 500)``: the probes' last answers."""
    parts = []
    for kind, probe in runner.health.probes().items():
        verdict = "ok" if probe.ok else "failing"
        parts.append(f"{kind}: {verdict}" + (f" ({probe.message})" if probe.message else ""))
    return " · ".join(parts)


def _note(runner: "ItemView") -> str:
    """One line saying why the item is in its state, when that is not obvious."""
    phase = runner.phase
    if phase == ItemState.BACKOFF:
        return f"next start in up to {runner.backoff_delay:g} s; {runner.last_reason}"
    if phase == ItemState.EXITED:
        ended = str(runner.last_exit) if runner.last_exit is not None else runner.last_reason
        return f"{ended}; not restarted (restart: {getattr(runner.config, 'restart', '')})"
    if phase in (ItemState.GIVEN_UP, ItemState.STOPPED, ItemState.WAITING) and runner.last_reason:
        return runner.last_reason
    if runner.state.running and (why := runner.health.note()):
        return why  # running, not ready: what readiness says
    if runner.state.running and runner.health.status_text:
        return runner.health.status_text
    if runner.state.run_once:
        return "run once: disabled after this run"
    return ""


def items(patrol: "Reader", stats: CpuSampler) -> list[Item]:
    wall = patrol.wall()
    return [item(r, wall, stats) for r in patrol.runners()]


#: units of work (patrol.util.steps) of building one Item (a /proc read for a running app)
ITEM_UNITS = 1


async def items_in_steps(patrol: "Reader", stats: CpuSampler, steps: Steps) -> list[Item]:
    """:func:`items`, giving the loop a turn between steps (10,000 items: ~50 ms)."""
    wall = patrol.wall()
    rows = []
    for runner in patrol.runners():
        await steps.take(ITEM_UNITS)
        rows.append(item(runner, wall, stats))
    return rows


# -- sorting and filtering -------------------------------------------------------------

_ORDER = {state: i for i, state in enumerate(STATE_LABELS)}
SORTS: dict[str, Callable[[Item], Any]] = {
    "name": lambda i: (i.name.lower(), i.id),
    "id": lambda i: i.id,
    "type": lambda i: (i.group, i.id),
    "state": lambda i: (_ORDER.get(i.state, 99), i.id),
    "pid": lambda i: (i.pid, i.id),
    "uptime": lambda i: (i.uptime if i.uptime is not None else -1.0, i.id),
    "restarts": lambda i: (i.restarts, i.id),
    "cpu": lambda i: (i.cpu if i.cpu is not None else -1.0, i.id),
    "memory": lambda i: (i.rss or 0, i.id),
}
STATE_FILTERS = ("", *STATE_LABELS)


def state_counts(rows: Iterable[Item], order: Iterable[str]) -> str:
    """``3 running, 1 backoff, 2 disabled``: in the states' order, with the API's words
    (the page's script keeps it current, :file:`patrol.js` ``countStates``)."""
    order = list(order)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    known = [s for s in order if s in counts] + sorted(s for s in counts if s not in order)
    return ", ".join(f"{counts[s]} {s}" for s in known)
TYPE_FILTERS = ("", "app", "service")


@dataclass(frozen=True)
class View:
    """The dashboard's sort and filter, from the query string."""

    sort: str = "name"
    descending: bool = False
    q: str = ""
    state: str = ""
    type: str = ""

    def apply(self, rows: Iterable[Item]) -> list[Item]:
        chosen = [r for r in rows if self.matches(r)]
        return sorted(chosen, key=SORTS[self.sort], reverse=self.descending)

    def matches(self, row: Item) -> bool:
        if self.state and row.state != self.state:
            return False
        if self.type and row.group != self.type:
            return False
        needle = self.q.lower()
        return not needle or any(needle in s.lower() for s in (row.id, row.name, row.label, row.state))

    def query(self, **changes: Any) -> str:
        """This view's query string with ``changes`` (for sort links)."""
        values = {"sort": self.sort, "order": "desc" if self.descending else "asc",
                  "q": self.q, "state": self.state, "type": self.type, **changes}
        defaults = {"sort": "name", "order": "asc"}
        return urlencode({k: v for k, v in values.items() if v and defaults.get(k) != v})


def parse_view(query: Mapping[str, str]) -> tuple[View, list[str]]:
    """The view a query string asks for, and what was wrong with it (then ignored)."""
    problems = []
    known = {"sort", "order", "q", "state", "type"}
    for key in query:
        if key not in known:
            problems.append(f"{key}: unknown query parameter (known: {', '.join(sorted(known))})")
    sort = query.get("sort", "name") or "name"
    if sort not in SORTS:
        problems.append(f"sort: unknown column {sort[:40]!r} (known: {', '.join(SORTS)})")
        sort = "name"
    order = query.get("order", "asc") or "asc"
    if order not in ("asc", "desc"):
        problems.append(f"order: must be asc or desc (got {order[:40]!r})")
        order = "asc"
    state = query.get("state", "")
    if state not in STATE_FILTERS:
        problems.append(f"state: unknown state {state[:40]!r} (known: {', '.join(STATE_FILTERS[1:])})")
        state = ""
    kind = query.get("type", "")
    if kind not in TYPE_FILTERS:
        problems.append(f"type: must be app or service (got {kind[:40]!r})")
        kind = ""
    q = query.get("q", "")[:200]
    return View(sort, order == "desc", q, state, kind), problems


# -- detail pages ----------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    record: "HistoryRecord"
    duration: float | None
    exit: str
    flags: list[str]
    log: str | None  # run file (relative to the log directory) of that instance, if known


def history_rows(records: Iterable["HistoryRecord"], group: str,
                 find_log: Callable[["HistoryRecord"], str | None]) -> list[HistoryRow]:
    """Newest first, as people read a history."""
    rows = []
    for r in reversed(list(records)):
        if group == "app":
            exit_text = _exit(r.exit_code, r.exit_signal)
        else:
            exit_text = ""
        flags = [name for name, on in (("disabled", r.disabled), ("restart", r.restart),
                                       ("run-once", r.run_once), ("shutdown", r.shutdown)) if on]
        duration = r.stopped - r.started if r.started is not None else None
        rows.append(HistoryRow(r, duration, exit_text, flags, find_log(r) if group == "app" else None))
    return rows


def _exit(code: int, sig: int | None) -> str:
    if sig is not None:
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return str(code)


def current_logs(runner: "ItemView") -> dict[str, str]:
    """stream -> absolute path of the last started instance's log files."""
    files = runner.state.started_log
    if files is None or not files.stdout:
        return {}
    if files.merged:
        return {"merged": files.stdout}
    return {"stdout": files.stdout, "stderr": files.stderr}


def keyvalues(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Key/values as JSON text (so ``"1"`` and ``1`` look different), sorted by key."""
    return [(str(k), json.dumps(v, ensure_ascii=False, default=str)) for k, v in sorted(values.items(), key=lambda kv: str(kv[0]))]
