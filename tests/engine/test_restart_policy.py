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
