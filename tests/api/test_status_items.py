"""``/status/``'s cached item texts never show an item as it was before a change.

Each item's text is cached with the inputs it was rendered from
(:mod:`patrol.api.status_items`). These tests change every one of those inputs, one
after the other, through the paths the engine uses (change sessions, runner fields, a
new configuration, the clock) and compare the cached answer with the uncached one-shot
rendering after each change; and they check that the list of inputs covers everything
the renderer reads, so a field added to an item later cannot be served stale.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import operator
import os
import random
import types
from pathlib import Path
from typing import Any, Callable, Coroutine

import pytest

from patrol.api import tabjson
from patrol.api.status_items import RUNNER_INPUTS, STATE_INPUTS, _tenths
from patrol.api.wire import dumps
from patrol.config import Methods, parse_config
from patrol.daemon import Daemon
from patrol.engine.item_state import HistoryRecord, State, new_instance_id
from patrol.plugin.keepalive import ExitStatus
from patrol.plugin.loader import Plugins
from patrol.util.steps import Steps

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def patrol(clock: Clock) -> Daemon:
    plugins = Plugins(strict=True)
    app = {"keepalive": 1, "binary": "b", "working-directory": "/srv", "log-directory": "l", "pid-path": "p"}
    doc = {"apps": {"a": {**app, "name": "A <é>"}, "b": {**app, "name": "B", "secret": "s", "keyvalue": {"k": 1}},
                    "u": {**app, "name": "U", "keepalive": 4}},  # u: kept alive by UDP pings
           "services": {"s": {"name": "S", "service": "s", "management": "service"}}}
    config, _ = parse_config(doc, Methods(plugins.keepalives, plugins.services))
    daemon = Daemon(config, plugins, wall=clock)
    daemon.supervisor.started = NOW - 100
    return daemon


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to its end without an event loop (it never waits on anything)."""
    while True:
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value


def cached_answer(daemon: Daemon) -> bytes:
    return b"".join(drive(daemon.api.status_json(Steps(10**9, seconds=float("inf")))))


def start(runner: Any, pid: int) -> None:
    with runner.state.session() as s:
        s.set(started=NOW - 10, pid=pid, instance_id=new_instance_id())


def end(runner: Any) -> None:
    st = runner.state
    with st.session() as s:
        s.append_history(HistoryRecord(instance_id=st.instance_id, started=st.started, stopped=NOW, pid=st.pid,
                                       exit_code=3, reason="exited <3>", keyvalue={"at": "end & é"}))
        s.set(started=None, pid=0, instance_id="", lastseen=None)


def answered(*, ok: bool, message: str, at: float) -> Any:
    """A probe loop as the status reads it: its last answer, and when that came."""
    return types.SimpleNamespace(last=types.SimpleNamespace(ok=ok, message=message), last_at=at, passing=0)


def in_session(runner: Any, **fields: Any) -> Callable[[], None]:
    """A change of the item's state fields, made in a change session as the engine makes it."""
    def change() -> None:
        with runner.state.session() as ses:
            ses.set(**fields)
    return change


def merged(runner: Any, values: dict[str, Any]) -> Callable[[], None]:
    """Key/values merged into the item's (in place, as a ping's are), in a change session."""
    def change() -> None:
        with runner.state.session() as ses:
            ses.merge_keyvalue(values)
    return change


def attributes(target: Any, **values: Any) -> Callable[[], None]:
    """Attributes set without a change session (the runner's own, Patrol's)."""
    return lambda: [setattr(target, k, v) for k, v in values.items()] and None


def changes(daemon: Daemon, clock: Clock) -> list[tuple[str, Callable[[], None]]]:
    """Every input of an item's text, changed the way the engine changes it."""
    sup = daemon.supervisor
    a, b, u, s = sup.apps["a"], sup.apps["b"], sup.apps["u"], sup.services["s"]
    me = os.getpid()

    session, merge, field = in_session, merged, attributes
    return [
        ("a starts (running: lastseen is now, uptime, cpu and memory)", lambda: start(a, me)),
        ("the clock moves (now and uptime)", lambda: setattr(clock, "now", clock.now + 1.5)),
        ("a is pinged", session(a, lastseen=NOW + 1)),
        ("a's key/values merge in place", merge(a, {"new": [1, {"x": "<y>"}]})),
        ("a's key/values again, same dict", merge(a, {"new": 2})),
        ("a is toggled disabled", session(a, disabled=True)),
        ("a restart is asked", session(a, disabled=False, restart=True)),
        ("run-once", session(a, run_once=True)),
        ("a ends: a history record", lambda: end(a)),
        ("a starts again", lambda: start(a, me)),
        ("a's runner counts a start", field(a, starts=5)),
        ("a's runner has a reason", field(a, last_reason="waiting for <x>")),
        ("a's runner has a fault", field(a, fault_message="log directory full")),
        ("a's last exit", field(a, last_exit=ExitStatus(code=None, signal=9))),
        ("a is ready (no change session)", lambda: setattr(a.health, "ready", True)),
        ("a's readiness probe answers (no change session)", lambda: setattr(a.health, "loops", {"readiness": answered(
            ok=False, message="no <answer> & é", at=NOW - 3)})),
        ("a's own status line (no change session)", lambda: setattr(a.health, "status_text", "ok <b> & é")),
        ("a's probes end", lambda: setattr(a.health, "loops", {})),
        ("a is a copy of a set (a reload)", field(a, config=dataclasses.replace(a.config, instance_of="set",
                                                                               instance=0))),
        ("a is a plain app again", field(a, config=dataclasses.replace(a.config, instance_of=""))),
        ("a stops (phase)", field(a, stop_task=object())),
        ("b (with a secret) gets key/values", merge(b, {"private": "hunter2"})),
        ("b's secret is dropped by a reload", field(b, config=dataclasses.replace(b.config, secret=""))),
        ("a is renamed by a reload", field(a, config=dataclasses.replace(a.config, name="A2 & more"))),
        ("u starts (pinged: no 'now')", lambda: start(u, me)),
        ("u is pinged", session(u, lastseen=NOW + 2)),
        ("the service starts", lambda: start(s, 0)),
        ("the service ends", lambda: end(s)),
        ("the timestamp layout changes", lambda: setattr(sup, "config", dataclasses.replace(
            sup.config, json_timestamp="2006-01-02 15:04:05.000"))),
        ("the clock moves within a second", lambda: setattr(clock, "now", clock.now + 0.25)),
        ("cas moves alone", session(a, cas=a.state.cas + 7)),
        ("pid changes", session(a, pid=1)),
    ]


def test_every_change_to_an_item_shows_in_the_next_status_answer():
    clock = Clock()
    daemon = patrol(clock)
    inputs = operator.attrgetter(*RUNNER_INPUTS)
    for name, change in changes(daemon, clock):
        cached_answer(daemon)  # every item's text is cached now
        change()
        assert cached_answer(daemon) == dumps(daemon.api.status()), name
        for runner in daemon.supervisor.runners():  # the key's runner part: RUNNER_INPUTS, read without properties
            assert runner.status_inputs() == inputs(runner), name


def test_an_unchanged_item_is_served_from_its_cached_text():
    clock = Clock()
    daemon = patrol(clock)
    api = daemon.api
    written: list[str] = []
    render_fields = api.render_fields

    def counting(runner: Any, **kwargs: Any) -> dict[str, Any]:
        written.append(runner.id)
        return render_fields(runner, **kwargs)

    api.render_fields = counting  # type: ignore[method-assign]
    first = cached_answer(daemon)
    assert sorted(written) == ["a", "b", "s", "u"]
    written.clear()
    assert cached_answer(daemon) == first and written == []
    with daemon.supervisor.apps["b"].state.session() as s:
        s.set(disabled=True)
    cached_answer(daemon)
    assert written == ["b"]


class Recorder:
    """Stands for an object and notes the name of every attribute read from it."""

    def __init__(self, target: Any, seen: set[str], inner: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_seen", seen)
        object.__setattr__(self, "_inner", inner or {})

    def __getattr__(self, name: str) -> Any:
        self._seen.add(name)
        return self._inner.get(name) or getattr(self._target, name)


@pytest.mark.parametrize("item", ["a", "b", "u", "s"])
def test_the_cache_key_holds_everything_an_item_text_is_rendered_from(item: str):
    clock = Clock()
    daemon = patrol(clock)
    sup = daemon.supervisor
    for runner in sup.runners():
        start(runner, os.getpid())
        end(runner)
        start(runner, os.getpid())
    runner = sup.apps.get(item) or sup.services[item]
    state_seen: set[str] = set()
    runner_seen: set[str] = set()
    state = Recorder(runner.state, state_seen)
    daemon.api.render_fields(Recorder(runner, runner_seen, {"state": state}), proven=False)
    daemon.api.live_fields(Recorder(runner, set(), {"state": Recorder(runner.state, set())}), stats=True)
    derived = {"restarts": "starts"}  # the key holds the input it is derived from
    assert {derived.get(name, name) for name in runner_seen - {"state", "id"}} <= set(RUNNER_INPUTS)  # id: the key
    assert STATE_INPUTS == ("cas",) and state_seen and runner_seen
    # the key holds the state's cas for all its fields: a change to any field it was
    # rendered from, made in a change session, moves cas (running: started's; history:
    # history_total's)
    state = runner.state
    for name in sorted(state_seen - {"running", "history", "cas"}):
        before = state.cas
        with state.session() as ses:
            if name == "keyvalue":
                ses.merge_keyvalue({"new": name})
            elif name == "history_total":
                ses.append_history(HistoryRecord(instance_id="h", started=None, stopped=NOW))
            else:
                ses.set(**{name: other_than(getattr(state, name))})
        assert state.cas == before + 1, name


def other_than(value: Any) -> Any:
    """A value of the field's kind that differs from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if value is None:
        return NOW
    return str(value) + "x"


#: the only modules that set an item state's fields outside a change session: the
#: session itself, and the state file's restore (which runs before the first answer)
STATE_WRITERS = {"patrol/engine/item_state.py", "patrol/engine/state_file.py"}


def test_no_code_sets_an_item_states_fields_outside_a_change_session():
    """The status cache reads a state's ``cas`` for all its fields: code that assigned
    one directly (``runner.state.pid = ...``) would leave its item's text stale."""
    fields = {f.name for f in dataclasses.fields(State)} - {"on_change"}  # (a hook, not shown)
    root = Path(__file__).resolve().parents[2]
    found = []
    for path in sorted([*root.glob("patrol/**/*.py"), *root.glob("plugins/**/*.py")]):
        relative = path.relative_to(root).as_posix()
        if relative in STATE_WRITERS or "/testing/" in relative:
            continue
        for node in ast.walk(ast.parse(path.read_text(), relative)):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr in fields and state_like(target.value):
                    found.append(f"{relative}:{node.lineno}: {ast.unparse(target)}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" \
                    and node.args and state_like(node.args[0]):
                found.append(f"{relative}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def state_like(node: ast.expr) -> bool:
    """Does the expression name an item's state (``state``, ``st``, ``x.state``)?"""
    name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
    return name in ("state", "st")


def test_a_live_tenth_is_written_as_the_renderer_writes_it():
    """Uptimes and CPU shares are written with "%.1f" where the renderer rounds to a tenth
    and prints the float: the same text over the whole range, the edges included (halves
    that are not exact in binary, negative, huge, infinite and NaN values)."""
    rng = random.Random(18)
    values = [i / 100 for i in range(100_000)] + [k + 0.05 for k in range(0, 10**6, 7)]
    values += [rng.uniform(0, 10.0 ** rng.randint(0, 15)) for _ in range(200_000)]
    values += [-0.0, -0.04, -1.5, 1e15, 1e15 - 0.05, 2.5e16, 1e300, math.inf, -math.inf, math.nan]
    for value in values:
        assert _tenths(value) == tabjson.float_text(round(max(0.0, value), 1)), value
        if 0.0 < value < 1e15:  # the usual case, written as bytes
            assert (b"%.1f" % value).decode() == _tenths(value), value
