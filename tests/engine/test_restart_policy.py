"""``restart``: always (the original's), on-failure (with ``success-exit-codes``), never.

An app its policy leaves ended is in state ``exited`` with its exit, and starts again
when it is enabled, restarted or run once, as any stopped app."""

from __future__ import annotations

import os
import signal

from patrol.testing import PatrolFactory, wait_for


def starts(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def policy_app(patrol: PatrolFactory, tmp_path, name: str, code: int, **keys: object) -> dict[str, object]:
    return patrol.app(1, env=[f"TESTAPP_EXIT={code}", f"TESTAPP_STARTLOG={tmp_path / name}"],
                      **{"backoff-base": 0.05, "backoff-reset": 0.05, **keys})


def exited(p, app_id: str) -> dict[str, object]:
    return wait_for(lambda: (e := p.app(app_id)).get("state") == "exited" and e, 10, f"{app_id} exited")


def test_on_failure_leaves_a_clean_exit_ended_and_restarts_a_failure(patrol, tmp_path):
    apps = {
        "clean": policy_app(patrol, tmp_path, "clean", 0, restart="on-failure"),
        "failing": policy_app(patrol, tmp_path, "failing", 3, restart="on-failure"),
        "listed": policy_app(patrol, tmp_path, "listed", 3, restart="on-failure", **{"success-exit-codes": [0, 3]}),
    }
    p = patrol.start(patrol.config(apps=apps))
    entry = exited(p, "clean")
    assert entry["last-exit"] == "exit code 0" and not entry.get("pid")
    assert exited(p, "listed")["last-exit"] == "exit code 3"
    wait_for(lambda: starts(tmp_path / "failing") >= 3, 10, "a failing app restarted")
    assert p.app("failing")["state"] != "exited"
    assert starts(tmp_path / "clean") == 1 and starts(tmp_path / "listed") == 1


def test_on_failure_restarts_an_app_killed_by_a_signal(patrol, tmp_path):
    app = patrol.app(1, restart="on-failure")
    p = patrol.start(patrol.config(apps={"a": app}))
    pid = p.running_pid("a", ready=True)
    os.kill(pid, signal.SIGKILL)
    p.running_pid("a", other_than=pid)


def test_never_restarts_no_exit_and_a_toggle_starts_it_again(patrol, tmp_path):
    apps = {"zero": policy_app(patrol, tmp_path, "zero", 0, restart="never"),
            "three": policy_app(patrol, tmp_path, "three", 3, restart="never")}
    p = patrol.start(patrol.config(apps=apps))
    assert exited(p, "zero")["last-exit"] == "exit code 0"
    assert exited(p, "three")["last-exit"] == "exit code 3"
    assert starts(tmp_path / "three") == 1
    for toggle, count in ((1, 2), (3, 3), (6, 4)):  # enable, restart, run-once: each starts it once more
        status, _ = p.api(id="three", group="app", toggle=toggle)
        assert status == 200
        wait_for(lambda: starts(tmp_path / "three") == count, 10, f"a start after toggle {toggle}")
        exited(p, "three") if toggle != 6 else wait_for(lambda: p.app("three").get("disabled"), 10, "run-once")
    assert starts(tmp_path / "three") == 4


def test_always_is_the_default_and_restarts_a_clean_exit(patrol, tmp_path):
    p = patrol.start(patrol.config(apps={"a": policy_app(patrol, tmp_path, "a", 0)}))
    wait_for(lambda: starts(tmp_path / "a") >= 3, 10, "restarts of a clean exit")
    assert p.app("a")["state"] != "exited"


def test_on_failure_keeps_the_backoff_and_the_start_limit(patrol, tmp_path):
    """Failures an on-failure policy restarts count against ``start-limit`` as always:
    it gives up (``given-up``, not ``exited``) after that many quick failures."""
    app = policy_app(patrol, tmp_path, "f", 3, restart="on-failure", **{"start-limit": 3, "backoff-reset": 30})
    p = patrol.start(patrol.config(apps={"f": app}))
    wait_for(lambda: p.app("f").get("state") == "given-up", 10, "the start limit")
    assert starts(tmp_path / "f") == 3


def test_the_end_a_policy_leaves_is_the_event_app_exited(tmp_path):
    """Observers (``patrol_trigger``) learn that the app stays ended: ``app.exited``
    after its ``app.closed``, with the state ``exited`` in its snapshot."""
    import asyncio

    from patrol import hookimpl
    from patrol.daemon import Daemon
    from patrol.plugin.loader import Plugins
    from patrol.plugin.model import AppConfig, PatrolConfig
    from patrol.testing import write_testapp

    events: list = []

    class Recorder:
        @hookimpl
        def patrol_trigger(self, patrol, event):
            if event.name.startswith("app."):
                events.append(event)

    write_testapp(tmp_path)
    app = AppConfig(id="t", keepalive="pid-patrol", name="T", binary="testapp", working_directory=str(tmp_path),
                    log_directory="logs", pid_path="t.pid", env=("TESTAPP_EXIT=3",), restart="never")
    daemon = Daemon(PatrolConfig(apps={"t": app}, services={}), Plugins(plugins=[Recorder()], strict=True))

    async def script() -> None:
        task = asyncio.create_task(daemon.run(transports=False))
        deadline = asyncio.get_running_loop().time() + 10
        while not any(e.name == "app.exited" for e in events):
            assert asyncio.get_running_loop().time() < deadline, [e.name for e in events]
            await asyncio.sleep(0.01)
        daemon.supervisor.request_shutdown()
        await task

    asyncio.run(script())
    names = [e.name for e in events if e.name != "app.shutdown"]
    assert names[-3:] == ["app.started", "app.closed", "app.exited"], names
    exited = next(e for e in events if e.name == "app.exited")
    assert exited.snapshot["state"] == "exited" and exited.snapshot["last-exit"] == "exit code 3"
