"""Services (spec §5, §6): the state machine, the commands, and their safety.

A fake service manager (a shell script) plays both ``service`` and ``/etc/init.d``
scripts: it records every call, keeps a "running" file per service, and obeys knob
files (``NAME.ACTION.exit`` / ``.fail`` / ``.hang`` / ``.daemon``). Black-box tests run
a real ``patrol run`` on it (configured through ``service-command`` and
``initd-directory``); the others run the Supervisor in this process with a short tick,
to look at timing and events precisely.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from patrol import hookimpl
from patrol.config import Methods, parse_config
from patrol.plugin.loader import Plugins
from patrol.plugin.service import ServiceBackend
from patrol.daemon import Daemon
from patrol.testing import UNITTEST_ENV, pid_alive, wait_for

FAKE = r"""#!/bin/sh
# A fake service manager for Patrol's tests: {kind}.
STATE='{state}'
{parse}
echo "{kind} $name $action" >> "$STATE/calls.log"
knob="$STATE/$name.$action"
if [ -e "$knob.hang" ]; then
    rm -f "$knob.hang"
    sleep 300 &
    echo "$$ $!" > "$STATE/hang.pids"
    wait
fi
if [ -e "$knob.fail" ]; then read code < "$knob.fail"; exit "$code"; fi
if [ -e "$knob.daemon" ]; then sleep 300 & echo $! > "$STATE/daemon.pid"; fi
case "$action" in
    status|check)
        if [ -e "$STATE/$name.running" ]; then echo "$name is running"; code=0
        else echo "$name is not running"; code=3; fi ;;
    start|up|restart|bounce) touch "$STATE/$name.running"; echo "$name started"; code=0 ;;
    stop|down) rm -f "$STATE/$name.running"; echo "$name stopped"; code=0 ;;
    *) echo "$name: unknown action $action" >&2; exit 2 ;;
esac
if [ -e "$knob.exit" ]; then read code < "$knob.exit"; fi
exit "$code"
"""


class FakeManager:
    """The fake ``service`` program and init.d directory, and their shared state."""

    def __init__(self, root: Path) -> None:
        self.state = root / "fake-state"
        self.state.mkdir()
        self.service_command = self._write(root / "fake-service", "service", 'name=$1 action=$2')
        self.initd = root / "fake-init.d"
        self.initd.mkdir()

    def _write(self, path: Path, kind: str, parse: str) -> Path:
        path.write_text(FAKE.format(kind=kind, state=self.state, parse=parse))
        path.chmod(0o755)
        return path

    def script(self, name: str) -> Path:
        """An init.d script for ``name`` in the fake init.d directory."""
        return self._write(self.initd / name, "initd", 'name=$(basename "$0") action=$1')

    def calls(self) -> list[str]:
        log = self.state / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def count(self, call: str) -> int:
        return self.calls().count(call)

    def set_running(self, name: str, running: bool = True) -> None:
        path = self.state / f"{name}.running"
        path.touch() if running else path.unlink(missing_ok=True)

    def running(self, name: str) -> bool:
        return (self.state / f"{name}.running").exists()

    def knob(self, name: str, action: str, kind: str, value: str = "") -> None:
        (self.state / f"{name}.{action}.{kind}").write_text(value)

    def pids(self, filename: str) -> list[int]:
        path = self.state / filename
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def service(self, name: str = "web", **keys: Any) -> dict[str, Any]:
        """A service config using the fake ``service`` program."""
        return {"name": f"Fake {name}", "service": name, "management": "service",
                "service-command": str(self.service_command), **keys}

    def kill_leftovers(self) -> None:
        for filename in ("hang.pids", "daemon.pid"):
            for pid in self.pids(filename):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fake(tmp_path: Path):
    manager = FakeManager(tmp_path)
    try:
        yield manager
    finally:
        manager.kill_leftovers()


def service_of(patrol_process, service_id: str = "web") -> dict[str, Any]:
    return patrol_process.status()["service"][service_id]


def state_is(patrol_process, state: str, service_id: str = "web") -> Callable[[], bool]:
    return lambda: service_of(patrol_process, service_id).get("state") == state


# -- black box: patrol run on the fake -------------------------------------------------------


def test_a_stopped_service_is_started_and_shows_in_the_api(patrol, fake):
    p = patrol.start(patrol.config(services={"web": fake.service()}), env=UNITTEST_ENV)
    wait_for(state_is(p, "running"), 10, "the service to be started")
    assert fake.calls()[:2] == ["service web status", "service web start"]
    assert fake.running("web")
    body = service_of(p)
    assert body["instance-id"] and body["started"] and body["name"] == "Fake web"
    assert "history" not in body and "pid" not in body
    status, api = p.api(id="web", group="service")
    assert status == 200 and api["group"] == "service" and api["instance-id"] == body["instance-id"]
    # the command's output is in Patrol's log, not thrown away
    wait_for(lambda: "web started" in p.log(), 5, "the start command's output in the log")


def test_a_running_service_is_adopted_then_stopped_on_disable_and_started_on_enable(patrol, fake):
    fake.set_running("web")
    p = patrol.start(patrol.config(services={"web": fake.service()}), env=UNITTEST_ENV)
    wait_for(state_is(p, "running"), 10)
    assert fake.count("service web start") == 0  # found running: adopted, not started again
    first = service_of(p)["instance-id"]

    assert p.api(id="web", group="service", toggle=2)[0] == 200
    wait_for(state_is(p, "disabled"), 10, "the service to be stopped")
    assert not fake.running("web")
    record = service_of(p)["history"][0]
    assert record["instance-id"] == first and record["disabled"] is True
    assert "restart" not in record and "pid" not in record and "exit-code" not in record

    statuses = fake.count("service web status")
    wait_for(lambda: fake.count("service web status") > statuses, 10, "a status check on the next tick")
    assert fake.count("service web start") == 0  # disabled: checked, never started

    p.api(id="web", group="service", toggle=1)
    wait_for(state_is(p, "running"), 10, "the service to be started again")
    assert fake.count("service web start") == 1 and fake.running("web")


def test_restart_toggle_restarts_and_records_it(patrol, fake):
    fake.set_running("web")
    p = patrol.start(patrol.config(services={"web": fake.service()}), env=UNITTEST_ENV)
    wait_for(state_is(p, "running"), 10)
    first = service_of(p)["instance-id"]
    p.api(id="web", group="service", toggle=3)
    wait_for(lambda: service_of(p).get("history"), 10, "the restart to close the instance")
    assert fake.count("service web restart") == 1
    record = service_of(p)["history"][0]
    assert record["instance-id"] == first and record["restart"] is True
    # the new instance is found by the status check that follows at once
    wait_for(lambda: service_of(p).get("instance-id") not in (None, first), 5, "a new instance")
    body = service_of(p)
    assert body["state"] == "running" and "restart" not in body and body["restarts"] == 1


@pytest.mark.parametrize("ignored", [True, False], ids=["ignored", "not-ignored"])
def test_ignore_exit_codes_of_each_action(patrol, fake, ignored):
    """Each action's own list turns its exit code into a success, and only that action's."""
    codes = {"status": 3, "start": 5, "stop": 6, "restart": 7}
    services = {}
    for action, code in codes.items():
        name = f"s-{action}"
        fake.knob(name, action, "exit", str(code))
        if action != "start":
            fake.set_running(name)  # status, stop and restart act on a running service
        keys = {"disabled": True} if action == "stop" else {}
        if ignored:
            keys[f"ignore-exit-codes-{action}"] = [code]
        services[name] = fake.service(name, **keys)
    # status exits 3 even while running; the ignore list of another action must not help
    services["s-status"]["ignore-exit-codes-start"] = [3]
    p = patrol.start(patrol.config(services=services), env=UNITTEST_ENV)
    p.api(id="s-restart", group="service", toggle=3)
    if ignored:
        wait_for(state_is(p, "running", "s-status"), 10)
        assert fake.count("service s-status start") == 0  # status 3 counted as running
        wait_for(state_is(p, "running", "s-start"), 10)  # start's 5 counted as started
        wait_for(state_is(p, "disabled", "s-stop"), 10)  # stop's 6 counted as stopped
        assert service_of(p, "s-stop")["history"][0]["disabled"] is True
        wait_for(lambda: service_of(p, "s-restart").get("history"), 10)  # restart's 7 too
        assert service_of(p, "s-restart")["history"][0]["restart"] is True
    else:
        wait_for(lambda: fake.count("service s-status start") >= 1, 10, "status 3 to mean stopped")
        wait_for(lambda: service_of(p, "s-start").get("last-reason") == "start: exit code 5", 10)
        assert "started" not in service_of(p, "s-start")
        wait_for(lambda: service_of(p, "s-stop").get("last-reason") == "stop: exit code 6", 10)
        assert service_of(p, "s-stop")["state"] == "running"  # a failed stop closes nothing
        wait_for(lambda: service_of(p, "s-restart").get("last-reason") == "restart: exit code 7", 10)
        body = service_of(p, "s-restart")
        assert "history" not in body and "restart" not in body  # flag cleared, instance kept


def test_each_action_can_use_its_own_backend(patrol, fake):
    fake.script("web")
    service = {"name": "Mixed", "service": "web", "management-status": "initd", "management-start": "service",
               "management-stop": 2, "management-restart": 1, "service-command": str(fake.service_command),
               "initd-directory": str(fake.initd)}
    p = patrol.start(patrol.config(services={"web": service}), env=UNITTEST_ENV)
    wait_for(state_is(p, "running"), 10)
    p.api(id="web", group="service", toggle=3)
    wait_for(lambda: service_of(p).get("history") and service_of(p).get("state") == "running", 10)
    p.api(id="web", group="service", toggle=2)
    wait_for(lambda: "initd web stop" in fake.calls() and service_of(p).get("state") == "disabled", 10)
    assert {c.split()[0] for c in fake.calls() if c.endswith(" status")} == {"initd"}
    assert "service web start" in fake.calls() and "initd web stop" in fake.calls()
    assert not any(c.startswith("initd") and c.split()[2] in ("start", "restart") for c in fake.calls())
    assert "service web stop" not in fake.calls()


def test_parameters_replace_the_action_words(patrol, fake):
    service = fake.service(**{"management-status-parameter": "check", "management-start-parameter": "up",
                              "management-stop-parameter": "down", "management-restart-parameter": "bounce"})
    p = patrol.start(patrol.config(services={"web": service}), env=UNITTEST_ENV)
    wait_for(state_is(p, "running"), 10)
    p.api(id="web", group="service", toggle=3)
    wait_for(lambda: service_of(p).get("history") and service_of(p).get("state") == "running", 10)
    p.api(id="web", group="service", toggle=2)
    wait_for(lambda: "service web down" in fake.calls() and service_of(p).get("state") == "disabled", 10)
    words = {c.split()[2] for c in fake.calls()}
    assert words == {"check", "up", "bounce", "down"}


def test_a_hanging_status_is_killed_with_its_children_and_apps_stay_supervised(patrol, fake):
    fake.set_running("slow")
    fake.knob("slow", "status", "hang")
    timeout = 3.0
    config = patrol.config(apps={"app": patrol.app(1)},
                           services={"slow": fake.service("slow", **{"status-timeout": timeout})})
    p = patrol.start(config, env=UNITTEST_ENV)
    command, child = wait_for(lambda: fake.pids("hang.pids"), 10, "the status command to hang")
    hung_at = time.monotonic()
    app_pid = wait_for(lambda: p.app("app").get("pid"), 10, "the app to run")

    os.kill(app_pid, signal.SIGKILL)  # during the hang: the app is respawned at once
    new_pid = wait_for(lambda: p.app("app").get("pid") not in (None, app_pid) and p.app("app")["pid"], 5)
    assert pid_alive(command) and pid_alive(child), "the app was respawned only after the hang ended"
    assert new_pid != app_pid

    wait_for(lambda: not pid_alive(command) and not pid_alive(child), timeout + 5, "the hung group to die")
    assert time.monotonic() - hung_at >= timeout - 0.5  # killed by the timeout, not before
    wait_for(lambda: "timed out" in p.log(), 5)
    assert "status: timed out after 3s (its process group was killed)" in p.log()
    # a timed-out status means "not running" (as the original): the service is started again
    wait_for(lambda: fake.count("service slow start") == 1, 10)


def test_services_keep_running_at_shutdown_unless_asked(patrol, fake):
    fake.set_running("keep")
    fake.set_running("halt")
    services = {"keep": fake.service("keep"), "halt": fake.service("halt", **{"stop-on-shutdown": True})}
    p = patrol.start(patrol.config(services=services), env=UNITTEST_ENV)
    wait_for(lambda: all(s.get("state") == "running" for s in p.status()["service"].values()), 10)
    assert p.terminate() == 0
    assert "service halt stop" in fake.calls() and not fake.running("halt")
    assert "service keep stop" not in fake.calls() and fake.running("keep")


def test_a_missing_program_is_a_start_failure_with_the_reason(patrol, fake, tmp_path):
    missing = tmp_path / "no-such-service"
    p = patrol.start(patrol.config(services={"web": fake.service(**{"service-command": str(missing)})}),
                     env=UNITTEST_ENV)
    reason = wait_for(lambda: service_of(p).get("last-reason"), 10)
    assert reason == f"start: cannot run {missing}: No such file or directory"
    # the first failure is retried at the next tick (2 s here), the second waits two ticks
    body = wait_for(lambda: (b := service_of(p)).get("state") == "backoff" and b, 10, "a backoff")
    assert body["backoff"] == 4.0 and "started" not in body
    assert p.proc.poll() is None


# -- in process: timing, backoff, events ---------------------------------------------------


async def until(predicate: Callable[[], Any], timeout: float = 10.0, message: str = "condition") -> Any:
    """``wait_for`` for the supervisor's own loop: poll without blocking it."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.01)
    return value


@contextlib.asynccontextmanager
async def supervising(services: dict[str, Any], *, tick: float = 0.2,
                      plugins: tuple[object, ...] = ()) -> AsyncIterator[Daemon]:
    """A Patrol on ``services`` in this loop, with a tick shorter than configs allow."""
    loaded = Plugins(strict=True, plugins=plugins)
    config, _ = parse_config({"services": services}, Methods(loaded.keepalives, loaded.services))
    daemon = Daemon(dataclasses.replace(config, tick_every=tick), loaded)
    task = asyncio.create_task(daemon.run(transports=False))
    await until(lambda: daemon.supervisor.started is not None, 5, "the supervisor to start")
    try:
        yield daemon
    finally:
        daemon.supervisor.request_shutdown()
        await asyncio.wait_for(task, 30)


class Recorder:
    """A ``patrol_trigger`` observer plugin keeping (event name, id, record) tuples."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    @hookimpl
    def patrol_trigger(self, event):  # type: ignore[no-untyped-def]
        if event.group == "service":
            self.events.append((event.name, event.id, event.record or event.error))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.events]


def test_repeated_start_failures_back_off_and_a_toggle_retries_at_once(fake):
    fake.knob("web", "start", "fail", "1")

    async def main() -> None:
        async with supervising({"web": fake.service()}) as d:
            runner = d.supervisor.services["web"]
            await until(lambda: runner.failures >= 4, 10, "four failed starts")
            assert runner.phase == "backoff" and runner.backoff_delay == pytest.approx(0.2 * 2 ** 3)
            attempts = fake.count("service web start")
            began = time.monotonic()
            await until(lambda: fake.count("service web start") > attempts, 5, "the next attempt")
            assert time.monotonic() - began >= 1.0  # 1.6 s after the 4th failure, not the next tick
            assert runner.last_reason == "start: exit code 1"
            # status is still checked every tick meanwhile, and a toggle resets the backoff
            (fake.state / "web.start.fail").unlink()
            statuses = fake.count("service web status")
            await until(lambda: fake.count("service web status") > statuses + 1, 5)
            d.api.handle({"id": "web", "group": "service", "toggle": 1})
            await until(lambda: runner.phase == "running", 2, "an immediate start after the toggle")
            assert runner.failures == 0

    asyncio.run(main())


def test_a_start_that_lies_counts_as_failed(fake):
    """start exits 0 but the service is not running at the next check: that is a failure too."""
    fake.knob("web", "start", "fail", "0")

    async def main() -> None:
        async with supervising({"web": fake.service()}) as d:
            runner = d.supervisor.services["web"]
            await until(lambda: runner.failures >= 3, 10, "three starts that did not last")
            assert runner.phase == "backoff"
            assert all(r.reason == "not running (status: exit code 3)" for r in runner.state.history)

    asyncio.run(main())


def test_events_follow_the_original_triggers(fake):
    recorder = Recorder()

    async def main() -> None:
        async with supervising({"web": fake.service()}, plugins=(recorder,)) as d:
            await until(lambda: "service.running" in recorder.names(), 5)
            d.api.handle({"id": "web", "group": "service", "toggle": 2})
            await until(lambda: "service.disabled" in recorder.names(), 5)
            assert [r.reason for r in d.supervisor.services["web"].state.history] == ["disabled"]
        names = recorder.names()
        assert names[:2] == ["service.start", "service.started"]
        closed = [record for name, _, record in recorder.events if name == "service.closed"]
        assert len(closed) == 1 and closed[0]["disabled"] is True
        assert names.index("service.closed") < names.index("service.disabled")
        assert names[-1] == "service.shutdown" and names.count("service.shutdown") == 1
        assert {i for _, i, _ in recorder.events} == {"web"}

    asyncio.run(main())


def test_run_once_disables_after_the_instance_ends(fake):
    fake.set_running("web")

    async def main() -> None:
        async with supervising({"web": fake.service(keyvalue={"a": 1}, **{"keyvalue-clear": True})}) as d:
            runner = d.supervisor.services["web"]
            await until(lambda: runner.state.running, 5)
            d.api.handle({"id": "web", "group": "service", "toggle": 4})
            assert runner.state.run_once_consumed  # running: consumed at once
            fake.set_running("web", False)  # it stops by itself
            await until(lambda: runner.state.history, 5, "the instance to close")
            record = runner.state.history[0]
            assert record.run_once is True and record.disabled is False
            assert record.keyvalue == {"a": 1} and runner.state.keyvalue == {}  # keyvalue-clear
            assert runner.state.disabled and runner.phase == "disabled"
            statuses = fake.count("service web status")
            await until(lambda: fake.count("service web status") > statuses + 1, 5)
            assert fake.count("service web start") == 0

    asyncio.run(main())


def test_a_daemon_left_behind_by_start_holding_the_output_survives(fake):
    """A start that backgrounds the service without redirecting its output must not block
    Patrol, and the service must not be killed as a "leftover" of the command."""
    fake.knob("web", "start", "daemon")

    async def main() -> None:
        async with supervising({"web": fake.service()}) as d:
            runner = d.supervisor.services["web"]
            began = time.monotonic()
            await until(lambda: runner.state.running, 5)
            assert time.monotonic() - began < 3
            (daemon,) = fake.pids("daemon.pid")
            statuses = fake.count("service web status")
            await until(lambda: fake.count("service web status") > statuses + 1, 5)
            assert pid_alive(daemon)

    asyncio.run(main())
    (daemon,) = fake.pids("daemon.pid")
    assert pid_alive(daemon)  # services keep running after Patrol stops


def test_shutdown_ends_a_command_in_flight_at_once(fake):
    fake.knob("web", "start", "hang")

    async def main() -> None:
        async with supervising({"web": fake.service(**{"command-timeout": 120})}) as d:
            await until(lambda: fake.pids("hang.pids"), 5, "the start to hang")
            assert d.supervisor.services["web"].phase == "starting"
            began = time.monotonic()
        assert time.monotonic() - began < 5
        for pid in fake.pids("hang.pids"):
            await until(lambda: not pid_alive(pid), 5, f"pid {pid} to die")

    asyncio.run(main())
    assert "service web stop" not in fake.calls()


class FakeCtl(ServiceBackend):
    """A systemctl-like backend (``PROGRAM ACTION NAME``) that a plugin alone adds."""

    name = "fakectl"
    options = ()

    def command(self, action: str, parameter: str) -> list[str]:
        return [str(self.service.x["ctl"]), parameter, self.service.service]


class FakeCtlPlugin:
    @hookimpl
    def patrol_register_services(self, register):  # type: ignore[no-untyped-def]
        register(FakeCtl)


def test_a_third_party_backend_needs_only_a_plugin(fake, tmp_path):
    ctl = tmp_path / "fakectl"
    ctl.write_text(f'#!/bin/sh\nexec "{fake.service_command}" "$2" "$1"\n')
    ctl.chmod(0o755)

    async def main() -> None:
        service = {"name": "Ctl", "service": "web", "management": "fakectl", "x": {"ctl": str(ctl)}}
        async with supervising({"web": service}, plugins=(FakeCtlPlugin(),)) as d:
            await until(lambda: d.supervisor.services["web"].state.running, 5)

    asyncio.run(main())
    assert fake.calls()[:2] == ["service web status", "service web start"]


def test_a_backend_that_raises_fails_only_its_service(fake):
    class Broken(FakeCtl):
        name = "broken"

        def command(self, action: str, parameter: str) -> list[str]:
            raise RuntimeError("no idea")

    class BrokenPlugin:
        @hookimpl
        def patrol_register_services(self, register):  # type: ignore[no-untyped-def]
            register(Broken)

    async def main() -> None:
        services = {"bad": {"name": "Bad", "service": "bad", "management": "broken"}, "web": fake.service()}
        async with supervising(services, plugins=(BrokenPlugin(),)) as d:
            await until(lambda: d.supervisor.services["web"].state.running, 5)
            bad = d.supervisor.services["bad"]
            await until(lambda: bad.failures >= 1, 5)
            assert bad.last_reason.startswith("start: backend broken (plugin BrokenPlugin-")  # names the plugin
            assert bad.last_reason.endswith(" could not build the command (RuntimeError: no idea)")
            assert not bad.state.running

    asyncio.run(main())


def test_command_output_is_bounded_and_a_chatty_command_does_not_block():
    from patrol.engine.reaper import Reaper
    from patrol.engine.spawn import run_command

    async def main() -> None:
        reaper = Reaper(asyncio.get_running_loop())
        reaper.install()
        try:
            result = await run_command(["/bin/sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; exit 4"],
                                       reaper, timeout=10, max_output=1000)
        finally:
            reaper.uninstall()
        assert result.exit_code == 4 and not result.timed_out
        assert result.output.startswith("x" * 1000)
        assert result.output.endswith("[... 299000 more bytes dropped]")

    asyncio.run(main())
