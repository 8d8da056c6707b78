"""``instances: N``: N copies ``ID-0 .. ID-(N-1)`` of one app, each a full item; the set's
id addresses them all (rolling restarts orchestrated by Patrol); ``patrol scale`` and the
API change N at run time, kept in the state file; a reload changes only what it must."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from patrol.testing import PatrolFactory, pid_alive, wait_for


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(e.decode().partition("=")[::2] for e in f.read().split(b"\0") if b"=" in e)


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def pool(patrol: PatrolFactory, n: int, **keys: object) -> dict[str, object]:
    return patrol.app(1, instances=n, args=["--copy={instance}"], env=["SLOT=slot-{instance}"],
                      **{"log-directory": "logs/{instance}", **keys})


def copies(p, set_id: str = "web") -> dict[str, dict[str, object]]:
    return {i: e for i, e in p.status()["apps"].items() if e.get("instance-of") == set_id}


def running(p, set_id: str, n: int) -> dict[str, int]:
    """Wait until the set has exactly ``n`` copies, all running; copy id -> pid."""
    def check() -> dict[str, int] | None:
        found = copies(p, set_id)
        pids = {i: e.get("pid") for i, e in found.items() if e.get("state") == "running"}
        return pids if len(found) == n and len(pids) == n and all(pids.values()) else None
    return wait_for(check, 15, f"{n} running copies of {set_id}")  # type: ignore[return-value]


def cli(p, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "patrol", *args, "--url", f"http://{p.http}"],
                          capture_output=True, text=True, timeout=30)


def test_three_instances_are_three_items_with_their_own_number(patrol, tmp_path):
    p = patrol.start(patrol.config(apps={"web": pool(patrol, 3)}))
    pids = running(p, "web", 3)
    assert sorted(pids) == ["web-0", "web-1", "web-2"] and len(set(pids.values())) == 3
    for k in range(3):
        entry, pid = p.app(f"web-{k}"), pids[f"web-{k}"]
        assert entry["instance-of"] == "web" and entry["instance"] == k
        env = environ(pid)
        assert (env["PATROL_ID"], env["PATROL_INSTANCE"], env["PATROL_INSTANCES"]) == (f"web-{k}", str(k), "3")
        assert env["SLOT"] == f"slot-{k}" and cmdline(pid)[-1] == f"--copy={k}"
        wait_for(lambda: p.app_log_has(f"testapp web-{k} started", f"logs/{k}"), 10, f"web-{k}'s own log directory")

    os.kill(pids["web-1"], signal.SIGKILL)  # only that copy is restarted
    new = p.running_pid("web-1", other_than=pids["web-1"])
    assert {i: p.app(i)["pid"] for i in ("web-0", "web-2")} == {"web-0": pids["web-0"], "web-2": pids["web-2"]}
    assert p.app("web-1")["restarts"] == 1 and new != pids["web-1"]


def test_scale_up_then_down_stops_the_highest_and_survives_a_restart(patrol, tmp_path):
    p = patrol.start(patrol.config(apps={"web": pool(patrol, 3)}))
    first = running(p, "web", 3)
    out = cli(p, "scale", "web", "5")
    assert out.returncode == 0 and "web: scaling to 5 (it had 3)" in out.stdout, out
    five = running(p, "web", 5)
    assert {k: five[k] for k in first} == first  # the first three are untouched
    assert environ(five["web-4"])["PATROL_INSTANCES"] == "5"

    assert cli(p, "scale", "web", "2").returncode == 0
    two = running(p, "web", 2)
    assert two == {"web-0": first["web-0"], "web-1": first["web-1"]}
    wait_for(lambda: not any(pid_alive(five[k]) for k in ("web-2", "web-3", "web-4")), 10, "stopped copies gone")

    assert p.terminate() == 0
    q = patrol.start(p.config)  # the same config and state file: still two copies
    assert sorted(running(q, "web", 2)) == ["web-0", "web-1"]


def test_a_reload_that_changes_instances_touches_only_the_copies_beyond(patrol, tmp_path):
    p = patrol.start(patrol.config(apps={"web": pool(patrol, 3)}))
    before = running(p, "web", 3)
    p.config["apps"]["web"]["instances"] = 2
    p.write_config()
    status, report = p.request("POST", "/-/reload")
    assert status == 200 and report["removed"] == ["app web-2"] and report["changed"] == [], report
    assert running(p, "web", 2) == {k: before[k] for k in ("web-0", "web-1")}
    p.config["apps"]["web"]["instances"] = 4
    p.write_config()
    status, report = p.request("POST", "/-/reload")
    assert status == 200 and report["added"] == ["app web-2", "app web-3"], report
    assert {k: v for k, v in running(p, "web", 4).items() if k in before and k != "web-2"} == {
        k: before[k] for k in ("web-0", "web-1")}


def test_a_rolling_restart_never_has_fewer_than_n_minus_1_running(patrol, tmp_path):
    p = patrol.start(patrol.config(apps={"web": pool(patrol, 3, **{"backoff-reset": 0.3})}))
    before = running(p, "web", 3)
    fewest, done = [3], threading.Event()

    def watch() -> None:
        while not done.is_set():
            fewest[0] = min(fewest[0], sum(e.get("state") == "running" for e in copies(p).values()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = cli(p, "restart", "web")
        assert out.returncode == 0 and "app web: restart requested (it was a set of 3 copies)" in out.stdout, out
        after = wait_for(lambda: (r := running(p, "web", 3)) and all(r[k] != before[k] for k in r) and r, 30,
                         "every copy restarted")
    finally:
        done.set()
        watcher.join()
    assert fewest[0] == 2, fewest  # one copy at a time was down, never two
    assert len(set(after.values()) & set(before.values())) == 0


def test_the_set_is_addressed_through_the_api_and_only_there(patrol, tmp_path):
    p = patrol.start(patrol.config(apps={"web": pool(patrol, 2, secret="s3cret", **{"restart-mode": "parallel"}),
                                         "single": patrol.app(1)}))
    running(p, "web", 2)
    status, body = p.api(id="web", group="app", secret="s3cret", toggle=2)  # disable every copy
    assert status == 200 and body["instances"] == 2 and sorted(body["items"]) == ["web-0", "web-1"]
    wait_for(lambda: all(e.get("state") == "disabled" for e in copies(p).values()), 10, "both disabled")
    status, body = p.api(id="web", group="app", toggle=1)  # without the secret: nothing changes
    assert status == 200 and body["cas-invalid"] is True
    assert all(e.get("state") == "disabled" for e in copies(p).values())
    assert p.api(id="web", group="app", secret="s3cret", toggle=1)[0] == 200
    running(p, "web", 2)
    for request, problem in (({"ping": True}, "ping: not for a set"), ({"keyvalue": {"a": 1}}, "keyvalue: not for"),
                             ({"cas": 5}, "cas: not for a set")):
        status, body = p.api(id="web", group="app", secret="s3cret", **request)
        assert status == 400 and body["errors"][0].startswith(problem), body
    status, body = p.api(id="single", group="app", instances=3)
    assert status == 400 and body["errors"][0].startswith("instances: only a set of instances"), body
    assert p.api(id="web", group="app", instances=1001)[0] == 400
    # over UDP a set is refused (silence, as every refusal there): its answer would dwarf the datagram
    assert p.udp_request({"id": "web", "group": "app", "secret": "s3cret", "toggle": 2}, timeout=0.5) is None
    assert p.udp_request({"id": "web-0", "group": "app", "secret": "s3cret"})["id"] == "web-0"
    assert all(e.get("state") == "running" for e in copies(p).values())


def test_the_clients_instance_bound_is_the_kernels():
    from patrol.cli.scale import MAX_INSTANCES as CLIENT
    from patrol.config.instances import MAX_INSTANCES

    assert CLIENT == MAX_INSTANCES


def test_a_set_that_depends_on_an_app_starts_its_copies_after_it(patrol, tmp_path):
    """The copies are woken when db runs, not at the next tick (the longest here, 120 s:
    the set's copies were once found by the set's id only, which names no runner)."""
    db = patrol.app(1, **{"pid-path": "db.pid", "log-directory": "dblogs"})
    config = patrol.config(apps={"db": db, "web": pool(patrol, 2, **{"depends-on": {"db": "started"}})})
    p = patrol.start({**config, "tick-every": 120})
    copies_ = running(p, "web", 2)
    assert p.app("db")["state"] == "running" and all(copies_.values())
    assert p.terminate() == 0  # the stop order knows the copies too


def test_at_shutdown_the_copies_of_a_dependent_set_stop_before_what_they_depend_on(patrol, tmp_path):
    """The copies ignore SIGTERM, so each takes its stop timeout to end: db, which they
    depend on, is stopped only after both (the stop order once looked for a runner with
    the set's id, found none, and stopped db at once, beside them)."""
    db = patrol.app(1, **{"pid-path": "db.pid", "log-directory": "dblogs"})
    web = patrol.app(1, instances=2, env=["TESTAPP_IGNORE=SIGTERM"],
                     **{"log-directory": "logs/{instance}", "stop-signal": "SIGTERM", "stop-timeout": 0.5,
                        "depends-on": {"db": "started"}})
    p = patrol.start(patrol.config(apps={"db": db, "web": web}))
    running(p, "web", 2)
    for copy in ("web-0", "web-1"):
        p.running_pid(copy, ready=True)  # its handlers are installed: SIGTERM is ignored now
    assert p.terminate() == 0
    closed = [r["app"] for r in p.log_records() if r.get("event") == "closed"]
    assert sorted(closed) == ["db", "web-0", "web-1"] and closed[-1] == "db", closed
