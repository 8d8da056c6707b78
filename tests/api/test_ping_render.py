"""A ping's answer from the cached rendering (:mod:`patrol.api.ping_render`) is the
uncached one, byte for byte, after every kind of change.

The cache keeps an app's rendered fields with the inputs they were rendered from and
writes ``lastseen`` and ``cas`` in place. These tests change each input the way the
engine does, ping through :meth:`Api.handle` as the UDP transport does, and compare the
answer with the one-shot rendering taken just before the ping (the answer is the state
before it); and they check that the inputs cover everything the renderer reads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import types
from typing import Any, Callable

from patrol.api.ping_render import RUNNER_INPUTS, STATE_INPUTS
from patrol.api.wire import dumps
from patrol.config import Methods, parse_config
from patrol.daemon import Daemon
from patrol.engine.item_state import HistoryRecord
from patrol.plugin.keepalive import ExitStatus
from patrol.plugin.loader import Plugins
from tests.api.test_status_items import Recorder, attributes, in_session, merged

NOW = 1_800_000_000.0
APP = {"keepalive": 4, "binary": "b", "working-directory": "/srv", "log-directory": "l", "pid-path": "p"}


class Clock:
    """The wall clock, moved by the test: ``uptime`` is the same in both renderings."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def patrol(clock: Clock | None = None) -> Daemon:
    plugins = Plugins(strict=True)
    doc = {"apps": {"u": {**APP, "name": "U <é>"}, "v": {**APP, "name": "V", "secret": "s3cret"},
                    "k": {**APP, "name": "K", "keyvalue": {"k": 1}}}}
    config, _ = parse_config(doc, Methods(plugins.keepalives, plugins.services))
    return Daemon(config, plugins, wall=clock or Clock())


def ping(daemon: Daemon, app: str, **extra: Any) -> None:
    """Ping as UDP does, and compare its answer with the uncached rendering."""
    api = daemon.api
    runner = daemon.supervisor.apps[app]
    request = {"id": app, "group": "app", "ping": True, **extra}
    proven = bool(runner.config.secret) and extra.get("secret") == runner.config.secret
    expected = api.render(runner, ids=True, history=False, proven=proven, stats=False)
    cas = extra.get("cas", 0)
    expected["cas-invalid"] = bool(cas) and cas != runner.state.cas
    response = api.handle(request, "udp", history=False)
    assert response.status == 200, response.body
    assert dumps(response.body, pretty=False) == dumps(expected, pretty=False), (app, extra)


def answered(*, ok: bool, message: str, at: float) -> Any:
    """A probe loop as an answer reads it: its last answer, and when that came."""
    return types.SimpleNamespace(last=types.SimpleNamespace(ok=ok, message=message), last_at=at, passing=0)


def changes(daemon: Daemon) -> list[tuple[str, Callable[[], None]]]:
    sup = daemon.supervisor
    u, v, k = sup.apps["u"], sup.apps["v"], sup.apps["k"]

    session, merge, field = in_session, merged, attributes

    def replace(runner: Any, values: dict[str, Any]) -> Callable[[], None]:
        def change() -> None:
            with runner.state.session() as s:
                s.replace_keyvalue(values)
        return change

    def history(runner: Any) -> Callable[[], None]:
        def change() -> None:
            with runner.state.session() as s:
                s.append_history(HistoryRecord(instance_id="old", started=1.0, stopped=2.0, pid=7, exit_code=1))
        return change

    return [
        ("nothing", lambda: None),
        ("u's key/values merge in place", merge(u, {"x": "<y>"})),
        ("u's key/values again, same dict", merge(u, {"x": 2})),
        ("u's key/values emptied", replace(u, {})),
        ("u is toggled disabled", session(u, disabled=True)),
        ("u is enabled, a restart asked", session(u, disabled=False, restart=True)),
        ("run-once", session(u, restart=False, run_once=True)),
        ("a history record (not in a ping's answer)", history(u)),
        ("u's runner counts a start", field(u, starts=5)),
        ("u's runner has a reason", field(u, last_reason="waiting for <x>")),
        ("u's runner has a fault", field(u, fault_message="log directory full")),
        ("u's last exit", field(u, last_exit=ExitStatus(code=None, signal=9))),
        ("u is ready (no change session)", lambda: setattr(u.health, "ready", True)),
        ("u's own status line (no change session)", lambda: setattr(u.health, "status_text", "ok <b> & é")),
        ("u's status line ends", lambda: setattr(u.health, "status_text", None)),
        ("u's readiness probe answers (no change session)", lambda: setattr(u.health, "loops", {"readiness": answered(
            ok=False, message="no <answer> & é", at=NOW - 3)})),
        ("u's probes end", lambda: setattr(u.health, "loops", {})),
        ("u is not ready", lambda: setattr(u.health, "ready", False)),
        ("u stops (phase)", field(u, stop_task=object())),
        ("u stopping no more", field(u, stop_task=None)),
        ("u is renamed by a reload", field(u, config=dataclasses.replace(u.config, name="U2 & more"))),
        ("u is a copy of a set (a reload)", field(u, config=dataclasses.replace(u.config, instance_of="set",
                                                                               instance=0))),
        ("the timestamp layout changes", lambda: setattr(sup, "config", dataclasses.replace(
            sup.config, json_timestamp="2006-01-02 15:04:05.000"))),
        ("a layout that may write nothing", lambda: setattr(sup, "config", dataclasses.replace(
            sup.config, json_timestamp=".999"))),
        ("the RFC 3339 layout again", lambda: setattr(sup, "config", dataclasses.replace(
            sup.config, json_timestamp=""))),
        ("cas moves alone", session(u, cas=u.state.cas + 7)),
        ("pid changes", session(u, pid=1)),
        ("v gets key/values (private)", merge(v, {"private": "hunter2"})),
        ("v's secret is dropped by a reload", field(v, config=dataclasses.replace(v.config, secret=""))),
        ("k's key/values change", merge(k, {"k": 2})),
        ("Patrol shuts down", field(sup, shutting_down=True)),
    ]


def test_every_change_shows_in_the_next_pings_answer():
    async def scenario() -> None:
        clock = Clock()
        daemon = patrol(clock)
        sup = daemon.supervisor
        sup.loop = asyncio.get_running_loop()
        me = os.getpid()
        rendered, pings = [], [0]  # renderings while answering, and answers
        render_fields, handle = daemon.api.render_fields, daemon.api.handle

        def counting(runner: Any, **kwargs: Any) -> dict[str, Any]:
            if pings[0] < 0:
                rendered.append(runner.id)
            return render_fields(runner, **kwargs)

        def counted(*args: Any, **kwargs: Any) -> Any:
            pings[0] = -pings[0] - 1  # negative: answering
            try:
                return handle(*args, **kwargs)
            finally:
                pings[0] = -pings[0]

        daemon.api.render_fields = counting  # type: ignore[method-assign]
        daemon.api.handle = counted  # type: ignore[method-assign]
        for app in ("u", "v", "k"):
            ping(daemon, app, pid=me, **({"secret": "s3cret"} if app == "v" else {}))  # adopts: no lastseen yet
            ping(daemon, app, pid=me, **({"secret": "s3cret"} if app == "v" else {}))  # now cached
        for name, change in changes(daemon):
            change()
            for app in ("u", "v", "k"):
                clock.now += 0.37  # a new lastseen each time, sometimes in the same second
                secret = {"secret": "s3cret"} if sup.apps[app].config.secret else {}
                ping(daemon, app, **secret)
                if secret:  # a wrong one: refused before anything is rendered, and nothing changes
                    wrong = daemon.api.handle({"id": app, "group": "app", "ping": True, "secret": "guess"}, "udp",
                                              history=False)
                    assert wrong.body == {"errors": ["Secret Invalid"]}
                ping(daemon, app, pid=me, **secret)
                ping(daemon, app, cas=1, **secret)  # CAS invalid: answered, nothing changes
                ping(daemon, app, cas=sup.apps[app].state.cas, **secret)
                ping(daemon, app, keyvalue={"n": name[:5]}, **secret)  # rendered whole from now on ...
                ping(daemon, app, **secret)
                ping(daemon, app, keyvalue={}, **{"keyvalue-replace": True}, **secret)  # ... until emptied
                ping(daemon, app, **secret)
                ping(daemon, app, **secret)
        assert len(rendered) < pings[0] / 2  # most answers came from the cache
        for runner in sup.runners():
            runner.control.call("closed")
            for timer in runner.instance.timers or ():
                timer.cancel()

    asyncio.run(scenario())


def test_the_inputs_hold_everything_a_pings_answer_is_rendered_from():
    daemon = patrol()
    runner = daemon.supervisor.apps["u"]
    with runner.state.session() as s:
        s.set(started=1.0, pid=os.getpid(), instance_id="i", lastseen=2.0)
    state_seen: set[str] = set()
    runner_seen: set[str] = set()
    state = Recorder(runner.state, state_seen)
    daemon.api.render_fields(Recorder(runner, runner_seen, {"state": state}), proven=False, ids=True, history=False)
    # written in place (lastseen, cas), never cached (keyvalue), running: started's
    assert state_seen - {"running", "lastseen", "cas", "keyvalue"} <= set(STATE_INPUTS)
    derived = {"restarts": "starts"}  # the key holds the input it is derived from
    # id: the cache's key is the runner
    assert {derived.get(name, name) for name in runner_seen - {"state", "id"}} <= set(RUNNER_INPUTS)
    assert state_seen and runner_seen
