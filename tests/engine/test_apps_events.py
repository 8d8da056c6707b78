"""Events: the triggers of spec section 9 through the patrol_trigger hook, in order.

In-process: a Supervisor embedded in the test with a plain Python observer object
registered programmatically (as a library user would), driving a real child process.
"""

import asyncio
import os
import signal
from pathlib import Path

from patrol import hookimpl
from patrol.plugin.model import AppConfig, Backoff, PatrolConfig
from patrol.plugin.loader import Plugins
from patrol.engine.item_state import DISABLE, ENABLE
from patrol.daemon import Daemon
from patrol.testing import write_testapp


class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def patrol_trigger(self, patrol, event):
        if event.name not in ("patrol.tick", "app.running", "app.disabled"):
            self.events.append(event)


class Raising:
    @hookimpl
    def patrol_trigger(self, event):
        raise RuntimeError("a broken observer")


async def until(predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def supervisor(tmp_path: Path, *observers):
    write_testapp(tmp_path)
    app = AppConfig(
        id="t", keepalive="pid-patrol", name="T", binary="testapp", working_directory=str(tmp_path),
        log_directory="logs", pid_path="t.pid", stop_timeout=2, backoff=Backoff(reset=0.5),
    )
    config = PatrolConfig(apps={"t": app}, services={})
    return Daemon(config, Plugins(plugins=observers, strict=True))


def test_hook_patrol_trigger_sequence_of_a_scripted_life_cycle(tmp_path):
    recorder = Recorder()
    daemon = supervisor(tmp_path, Raising(), recorder)
    sup = daemon.supervisor

    async def script():
        task = asyncio.create_task(daemon.run(transports=False))
        await until(lambda: "t" in sup.apps and sup.apps["t"].state.pid)
        runner = sup.apps["t"]
        first = runner.state.pid
        await until(lambda: _ready(tmp_path, first))
        os.kill(first, signal.SIGTERM)  # testapp exits 0: closed, then restarted at once
        await until(lambda: runner.state.pid not in (0, first))
        second = runner.state.pid
        await until(lambda: _ready(tmp_path, second))
        daemon.api.handle({"group": "app", "id": "t", "toggle": DISABLE})
        await until(lambda: not runner.state.running and runner.phase == "disabled")
        daemon.api.handle({"group": "app", "id": "t", "toggle": ENABLE})
        await until(lambda: runner.state.running)
        sup.request_shutdown()
        await task
        return first, second

    first, second = asyncio.run(script())
    names = [e.name for e in recorder.events]
    assert names == [
        "patrol.started",
        "app.start", "app.started",  # spawn
        "app.closed",  # its own exit
        "app.start", "app.started",  # restarted at once
        "app.closed",  # disabled
        "app.start", "app.started",  # enabled
        "patrol.shutdown", "patrol.stopped",
        "app.closed",  # stopped by the shutdown
        "app.shutdown",
    ], names
    closed = [e for e in recorder.events if e.name == "app.closed"]
    assert closed[0].record["pid"] == first and "exit-code" not in closed[0].record
    assert closed[1].record["pid"] == second and closed[1].record["disabled"] is True
    assert closed[2].record["shutdown"] is True
    started = [e for e in recorder.events if e.name == "app.started"]
    assert started[0].snapshot["pid"] == first and started[0].snapshot["id"] == "t"
    assert all("secret" not in e.snapshot or e.snapshot["secret"] is True for e in recorder.events)


def _ready(tmp_path, pid):
    return any(f"started, pid {pid}," in f.read_text() for f in (tmp_path / "logs").rglob("*.stdout.log"))
