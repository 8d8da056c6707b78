"""P1: a keepalive plugin that raises cannot wedge its app, nor Patrol.

A real third-party plugin, "installed" the way pip would leave it: a module and a
``.dist-info`` with an entry point in the ``patrol`` group, on ``PYTHONPATH`` of a real
``patrol run``. Each of its keepalive methods raises in one place; each app must take
the normal failure path (processes stopped, backoff, the reason in ``last-reason``
naming the plugin), the log must carry the plugin's name and the traceback, and the
other apps and the API must go on.
"""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

from patrol.testing import UNITTEST_ENV, pid_alive, pids_with_marker, wait_for

PLUGIN = textwrap.dedent('''
    from patrol import KeepAlive, PingKeepAlive, hookimpl


    class Boom(RuntimeError):
        pass


    class Spawned(KeepAlive):
        name = "raise-spawned"

        def spawned(self, pid):
            raise Boom("in spawned")


    class Alive(KeepAlive):
        def spawned(self, pid):
            self.app.alive(pid)


    class Check(Alive):
        name = "raise-check"

        def check(self):
            if self.app.running:
                raise Boom("in check")


    class ChildExited(Alive):
        name = "raise-child-exited"

        def child_exited(self, pid, status):
            raise Boom("in child_exited")


    class Closed(Alive):
        name = "raise-closed"

        def closed(self):
            raise Boom("in closed")


    class Timer(Alive):
        name = "raise-timer"

        def spawned(self, pid):
            self.app.alive(pid)
            self.app.call_later(0.3, self.fire)

        def fire(self):
            raise Boom("in a timer")


    class Adopt(Alive):
        name = "raise-adopt"

        def adopt(self):
            raise Boom("in adopt")


    class Pinged(PingKeepAlive):
        name = "raise-pinged"
        ping_transport = "http"

        def pinged(self, pid):
            raise Boom("in pinged")


    @hookimpl
    def patrol_register_keepalives(register):
        for cls in (Spawned, Check, ChildExited, Closed, Timer, Adopt, Pinged):
            register(cls)

''')

#: transport, backend and observer: a second entry point of the same distribution
EXTRAS = textwrap.dedent('''
    from patrol import ServiceBackend, Transport, hookimpl


    class Boom(RuntimeError):
        pass


    class BackendInit(ServiceBackend):
        name = "raise-init"

        def __init__(self, service):
            raise Boom("in a backend's constructor")

        def command(self, action, parameter):
            return ["true"]


    class BadTransport(Transport):
        name = "raise-start"

        async def start(self):
            raise Boom("in a transport's start")

        async def stop(self):
            pass


    class BadStop(Transport):
        name = "raise-stop"

        async def start(self):
            pass

        async def stop(self):
            raise Boom("in a transport's stop")


    @hookimpl
    def patrol_register_services(register):
        register(BackendInit)


    @hookimpl
    def patrol_register_transports(register):
        register(BadTransport)
        register(BadStop)


    @hookimpl
    def patrol_trigger(event):
        if event.name == "patrol.started":
            raise Boom("in an observer")
''')

#: app id -> (keepalive, where it raises)
APPS = {
    "spawned": ("raise-spawned", "spawned()"),
    "check": ("raise-check", "check()"),
    "child": ("raise-child-exited", "child_exited()"),
    "closed": ("raise-closed", "closed()"),
    "timer": ("raise-timer", "a timer callback"),
    "pinged": ("raise-pinged", "pinged()"),
}
ORIGIN = "raising (patrol-keepalive-raising 0.1)"
EXTRAS_ORIGIN = "raising_extras (patrol-keepalive-raising 0.1)"


def install(site: Path, extras: bool = False) -> None:
    """The distribution as pip leaves it: modules and a .dist-info with entry points."""
    site.mkdir()
    (site / "patrol_keepalive_raising.py").write_text(PLUGIN)
    (site / "patrol_raising_extras.py").write_text(EXTRAS)
    info = site / "patrol_keepalive_raising-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: patrol-keepalive-raising\nVersion: 0.1\n"
                                   "Requires-Dist: patrol>=0.2,<0.3\n")
    entry_points = "[patrol]\nraising = patrol_keepalive_raising\n"
    if extras:
        entry_points += "raising_extras = patrol_raising_extras\n"
    (info / "entry_points.txt").write_text(entry_points)


def test_p1_a_raising_keepalive_plugin_fails_its_app_the_normal_way(patrol, tmp_path):
    install(tmp_path / "site")
    env = {**UNITTEST_ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    slow = {"backoff-base": 0.5, "backoff-max": 1, "stop-timeout": 1}
    apps = {app_id: patrol.app(keepalive, **slow) for app_id, (keepalive, _) in APPS.items()}
    apps["child"]["env"] += ["TESTAPP_LIFETIME=0.3"]  # exits by itself: child_exited() is called
    apps["closed"]["env"] += ["TESTAPP_LIFETIME=0.3"]
    apps["adopt"] = patrol.app("raise-adopt", **slow)
    apps["fine"] = patrol.app(1)
    p = patrol.start(patrol.config(apps=apps), env=env)
    fine = p.running_pid("fine")
    p.running_pid("pinged", ready=False, timeout=20)  # spawned after the startup grace (6 s)
    assert p.api(id="pinged", group="app", ping=True, pid=p.app("pinged")["pid"])[0] == 200

    for app_id, (keepalive, where) in APPS.items():
        expected = f"keepalive {keepalive!r} (plugin {ORIGIN}) failed in {where}: Boom: in "
        wait_for(lambda a=app_id: shows(p.app(a), expected), 20, f"{app_id}: the failure as its reason")
        # taken up again (an immediate restart passes through `stopped` for one loop step)
        wait_for(lambda a=app_id: p.app(a)["state"] in ("backoff", "starting", "running", "stopping"), 5,
                 f"{app_id}: restarted or backing off after the failure")
    # the failure counts as a quick one: the ladder grows instead of a restart per tick
    wait_for(lambda: p.app("check").get("restarts", 0) >= 2, 20, "check restarted after backoff")
    assert "adopt" in {r.get("app") for r in failures(p)}  # adopt() raised at startup, logged
    assert p.app("adopt")["state"] in ("running", "starting")  # and the app was started normally

    for record in failures(p):
        assert record["plugin"] == ORIGIN and "Boom" in record["exception"]
        assert "patrol_keepalive_raising.py" in record["exception"]  # the traceback, into the plugin
    assert "tick failed" not in p.log() and "Task exception was never retrieved" not in p.log()
    assert "Exception in callback" not in p.log()
    assert p.app("fine")["pid"] == fine and "history" not in p.app("fine")

    # processes of the failed instances were stopped: after shutdown none is left
    assert p.terminate() == 0
    left = [pid for pid in pids_with_marker(patrol.marker) if pid != p.pid and pid_alive(pid)]
    assert left == [], left


def test_p1_raising_backends_transports_and_observers_fail_alone(patrol, tmp_path):
    install(tmp_path / "site", extras=True)
    env = {**UNITTEST_ENV, "PYTHONPATH": str(tmp_path / "site")}
    services = {"svc": {"name": "Svc", "service": "svc", "management": "raise-init"}}
    p = patrol.start(patrol.config(apps={"fine": patrol.app(1)}, services=services), env=env)
    p.running_pid("fine")  # Patrol runs: without the broken transport, with the HTTP one
    reason = wait_for(lambda: p.status()["service"]["svc"].get("last-reason"), 15, "the service's reason")
    assert f"backend raise-init (plugin {EXTRAS_ORIGIN}) failed to start: Boom: in a backend's constructor" in reason
    records = {r["event"]: r for r in p.log_records()}
    for event in ("transport failed to start; running without it", "service backend failed to start",
                  "trigger observer failed"):
        assert records[event]["plugin"] == EXTRAS_ORIGIN, event
        assert "Boom" in records[event]["exception"] and "patrol_raising_extras.py" in records[event]["exception"]
    assert p.terminate() == 0
    stopped = [r for r in p.log_records() if r["event"] == "stop failed during shutdown"]
    assert stopped and f"(plugin {EXTRAS_ORIGIN})" in stopped[0]["stopping"] and "Boom" in stopped[0]["exception"]


def shows(item: dict, reason: str) -> dict | None:
    """The item, if ``reason`` is its ``last-reason`` (a start that failed) or the reason
    of an instance in its history (one that ran, failed, and was restarted since)."""
    reasons = [item.get("last-reason", "")] + [r.get("reason", "") for r in item.get("history", [])]
    return item if any(reason in r for r in reasons) else None


def failures(p) -> list[dict]:
    return [r for r in p.log_records() if r.get("event") == "keepalive plugin failed"]


def test_p1_the_spawned_process_of_a_failed_start_is_stopped(patrol, tmp_path):
    install(tmp_path / "site")
    env = {**UNITTEST_ENV, "PYTHONPATH": str(tmp_path / "site")}
    app = patrol.app("raise-spawned", env=["TESTAPP_IGNORE=SIGUSR1"], **{"backoff-base": 30, "backoff-max": 30,
                                                                          "stop-timeout": 0.5})
    p = patrol.start(patrol.config(apps={"s": app}), env=env)
    wait_for(lambda: p.app("s").get("state") == "backoff", 15, "backoff after the failed starts")
    # both launches (the first failure is retried at once) were stopped, the second by SIGKILL
    wait_for(lambda: [x for x in pids_with_marker(patrol.marker) if x != p.pid] == [], 5, "no app left")
    os.kill(p.pid, signal.SIGTERM)
    p.proc.wait(10)
