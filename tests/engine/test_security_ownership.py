"""Process ownership: which process Patrol may signal, reap, adopt and stop.

Black-box against a real ``patrol run`` where the defect is observable that way (F1, F2,
F3, F11, F12, P4, P5); the signalling guard itself (pid 1 and Patrol's ancestors, which a
regression must not actually hit) and the ownership rules are checked in-process with
real processes and the harmless SIGCONT.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from patrol.engine import ownership
from patrol.util.backoff import capped_exponential
from patrol.engine.reaper import Reaper
from patrol.engine.signalling import signal_group, signal_pid
from patrol.testing import UNITTEST_ENV, item_errors, pid_alive, pids_with_marker, wait_for


def script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return name


def entry(p, app_id: str, predicate, timeout: float, what: str) -> dict:
    def check():
        found = p.app(app_id)
        return found if predicate(found) else None

    return wait_for(check, timeout, what)


# -- F1: a forged ping cannot take over another app's process ------------------------------


def test_f1_forged_ping_cannot_take_over_another_apps_process(patrol):
    """One datagram naming another app's pid (to a disabled app without a secret) used to
    replace the victim's exit watcher and add its group: the victim was killed by the
    other app's stop, or never restarted. Now the pid is only recorded."""
    apps = {
        "victim": patrol.app(1, secret="victim-secret-1234", **{"stop-timeout": 1}),
        "thief": patrol.app(4, disabled=True),  # udp keepalive, no secret
        "web": patrol.app(3, env=["TESTAPP_PING_DELAY=1000"]),  # http, never pings by itself
    }
    p = patrol.start(patrol.config(apps=apps), env=UNITTEST_ENV)  # tick 2 s, ping-timeout 3 s
    victim = p.running_pid("victim", ready=True)
    p.running_pid("web")
    answer = p.udp_request({"group": "app", "id": "thief", "ping": True, "pid": victim})
    assert answer is not None and answer["id"] == "thief"
    assert p.api(id="web", group="app", ping=True, pid=victim)[0] == 200
    thief = entry(p, "thief", lambda e: "not proven" in e.get("fault", ""), 10, "the disabled thief's fault")
    assert thief["pid"] == victim and thief["state"] == "running"  # recorded, nothing more
    p.api(id="web", group="app", toggle=3)  # restart web: its own launcher only
    entry(p, "thief", lambda e: e.get("history"), 10, "the thief's instance to expire")
    entry(p, "web", lambda e: e.get("history"), 10, "web's instance to end")
    assert pid_alive(victim) and p.app("victim")["pid"] == victim and "history" not in p.app("victim")

    os.kill(victim, signal.SIGKILL)  # the victim's own watcher still gets its exit status
    after = entry(p, "victim", lambda e: e.get("pid") not in (None, victim), 10, "the victim restarted")
    assert after["history"][-1]["pid"] == victim and after["history"][-1]["exit-signal"] == "SIGKILL"
    assert p.log().count("refused to signal") == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="starts a process as another user")
def test_f1_a_marker_in_another_users_process_proves_nothing(patrol):
    """Anyone can write ``PATROL_ID=web`` into an environment: another user's process that
    claims it, pinged in, is only recorded. Before, the marker alone made Patrol signal it
    (and its whole job group) on disable."""
    app = patrol.app(3, env=["TESTAPP_PING_DELAY=1000"], **{"stop-timeout": 0.5})
    p = patrol.start(patrol.config(apps={"web": app}), env=UNITTEST_ENV)
    claimer = subprocess.Popen(["sleep", "300"], user=65534, start_new_session=True,
                               env={"PATROL_ID": "web", "PATROL_TEST_MARKER": patrol.marker})
    try:
        wait_for(lambda: ownership.marker(claimer.pid) == "web", 5, "the claimer's environment")
        assert p.api(id="web", group="app", ping=True, pid=claimer.pid)[0] == 200
        p.api(id="web", group="app", toggle=2)
        found = entry(p, "web", lambda e: "not proven" in e.get("fault", ""), 10, "the refusal to signal it")
        assert found["pid"] == claimer.pid and claimer.poll() is None
    finally:
        claimer.kill()
        claimer.wait()


# -- F2: a pid file cannot make Patrol signal Patrol, pid 1, its ancestors, or older processes --


def test_f2_pid_file_naming_patrol_itself_is_never_adopted(patrol, tmp_path):
    """A disabled pid-app whose pid file names Patrol (written here by the test), and an
    enabled one whose program writes ``$PPID`` (Patrol, its parent): before, Patrol
    adopted itself, sent itself the stop signal, then SIGKILL."""
    script(tmp_path, "ppid", 'echo $PPID > "$PATROL_PID"\nexec sleep 300\n')
    apps = {
        "off": patrol.app(2, disabled=True, **{"pid-path": "off.pid", "stop-timeout": 0.5}),
        "own": patrol.app(2, binary="ppid", **{"pid-path": "own.pid", "stop-timeout": 0.5, "pid-grace": 0.5,
                                               "backoff-base": 60, "backoff-max": 60}),
    }
    p = patrol.start(patrol.config(apps=apps), env=UNITTEST_ENV)
    (tmp_path / "off.pid").write_text(f"{p.pid}\n")
    for app_id in ("off", "own"):
        found = entry(p, app_id, lambda e: f"names pid {p.pid}, which is Patrol" in e.get("fault", ""), 15,
                      f"{app_id}: the refusal")
        assert found.get("pid", 0) != p.pid
    p.api(id="own", group="app", toggle=2)
    entry(p, "own", lambda e: e["state"] == "disabled", 5, "own disabled")
    assert p.proc.poll() is None and "refused to signal" not in p.log()
    assert p.terminate() == 0


def test_f2_pid_file_naming_a_process_older_than_the_launch_is_not_adopted(patrol, tmp_path):
    """Outside the pid-grace, a pid file naming a process older than the app's last launch
    is refused (a fault), so a later disable cannot signal that process."""
    from patrol.engine.procfs import stat

    older = subprocess.Popen(["sleep", "300"], env={**os.environ, "PATROL_TEST_MARKER": patrol.marker})
    try:  # older by more than the clock slack (1 s) the pid keepalive allows
        wait_for(lambda: time.time() - stat(older.pid).started_at > 1.5, 5, "an older process")
        script(tmp_path, "writer", f'echo {older.pid} > "$PATROL_PID"\nexit 0\n')
        (tmp_path / "off.pid").write_text(f"{older.pid}\n")  # a disabled app, never launched
        apps = {
            "w": patrol.app(2, binary="writer", **{"pid-grace": 0.3, "backoff-base": 60, "backoff-max": 60,
                                                   "stop-timeout": 0.5}),
            "off": patrol.app(2, disabled=True, **{"pid-path": "off.pid", "stop-timeout": 0.5}),
        }
        p = patrol.start(patrol.config(apps=apps), env=UNITTEST_ENV)
        found = entry(p, "w", lambda e: "older than the app's last start" in e.get("fault", "")
                      and e["state"] == "backoff", 15, "the refusal, in backoff")
        assert "pid" not in found
        found = entry(p, "off", lambda e: "not adopted while the app is disabled" in e.get("fault", ""), 5,
                      "the disabled app's refusal")
        assert "pid" not in found and found["state"] == "disabled"
        p.api(id="w", group="app", toggle=2)
        entry(p, "w", lambda e: e["state"] == "disabled", 5, "disabled")
        assert older.poll() is None  # never signalled
    finally:
        older.kill()
        older.wait()


@pytest.mark.parametrize("target", ["init", "patrol", "parent", "grandparent", "thread"])
def test_f2_the_signalling_functions_refuse_pid1_patrol_and_its_ancestors(target):
    """The guard is inside signal_pid/signal_group: no caller can get past it. SIGCONT is
    harmless, so a regression here does no damage (True would mean it was sent)."""
    import threading

    pid = {"init": 1, "patrol": os.getpid(), "parent": os.getppid()}.get(target)
    if target == "grandparent":
        pid = ownership.ancestors()[1] if len(ownership.ancestors()) > 1 else 1
    if target == "thread":  # a thread id of Patrol names Patrol to kill()
        started = threading.Event()
        done = threading.Event()
        tids = []
        worker = threading.Thread(target=lambda: (tids.append(threading.get_native_id()), started.set(),
                                                  done.wait(5)))
        worker.start()
        started.wait(5)
        pid = tids[0]
    try:
        assert ownership.is_protected(pid)
        assert signal_pid(pid, signal.SIGCONT) is False
        assert signal_group(os.getpgid(os.getpid()), signal.SIGCONT) is False
        if target in ("parent", "grandparent"):
            assert signal_group(os.getpgid(pid), signal.SIGCONT) is False
        assert ownership.Ownership().owner(pid) is None  # never anyone's
    finally:
        if target == "thread":
            done.set()
            worker.join()


def test_f2_a_process_is_told_from_a_thread_without_its_status_file(monkeypatch):
    """A process (a thread group's leader) is its own tgid: proven by pidfd_open alone.
    A thread id is not one, and its status file still names its process."""
    import threading

    done = threading.Event()
    tids: list[int] = []
    worker = threading.Thread(target=lambda: (tids.append(threading.get_native_id()), done.wait(5)))
    worker.start()
    child = subprocess.Popen(["sleep", "30"])
    try:
        wait_for(lambda: tids, 5)
        read: list[int] = []
        real_tgid = ownership.procfs.tgid
        monkeypatch.setattr(ownership.procfs, "tgid", lambda pid: read.append(pid) or real_tgid(pid))
        assert not ownership.is_protected(child.pid) and read == []  # a process: no read
        assert ownership.is_protected(tids[0]) and read == [tids[0]]  # a thread of Patrol: read, refused
        assert signal_pid(tids[0], signal.SIGCONT) is False
    finally:
        done.set()
        worker.join()
        child.kill()
        child.wait()


# -- F3: a FIFO at the pid-file path never freezes Patrol ----------------------------------


def test_f3_a_fifo_at_the_pid_file_path_never_blocks_patrol(patrol, tmp_path):
    os.mkfifo(tmp_path / "off.pid")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "fifo", tmp_path / "on.pid")  # followed, then refused as not a regular file
    script(tmp_path, "quiet", "exec sleep 300\n")
    apps = {
        "off": patrol.app(2, disabled=True, **{"pid-path": "off.pid"}),
        "on": patrol.app(2, binary="quiet", **{"pid-path": "on.pid", "pid-grace": 0.5, "backoff-base": 0.2}),
        "ok": patrol.app(1),
    }
    p = patrol.start(patrol.config(apps=apps), env=UNITTEST_ENV)  # before: never answered
    for app_id in ("off", "on"):
        entry(p, app_id, lambda e: "is not a regular file" in e.get("fault", ""), 10, f"{app_id}: FIFO refused")
    pid = p.running_pid("ok", ready=True)
    os.kill(pid, signal.SIGKILL)
    p.running_pid("ok", other_than=pid)
    began = time.monotonic()
    assert p.terminate(timeout=15) == 0
    assert time.monotonic() - began < 10


def test_f3_read_pid_file_refuses_what_is_not_a_regular_file_without_blocking(tmp_path):
    from patrol_keepalive_pid import NotARegularFile, read_pid, read_pid_file

    os.mkfifo(tmp_path / "fifo")
    assert read_pid(str(tmp_path / "fifo")) is None
    with pytest.raises(NotARegularFile):
        read_pid_file(str(tmp_path / "fifo"))
    assert read_pid("/dev/zero") is None  # a device: refused, not read forever
    big = tmp_path / "big.pid"
    big.write_text("1" * 10_000_000)
    assert read_pid(str(big)) is None  # only 64 bytes are read: not a pid


# -- F11: processes that leave the app's session are stopped with it -----------------------


def test_f11_daemons_that_leave_the_session_do_not_pile_up_or_survive_shutdown(patrol, tmp_path):
    """Each instance starts a daemon in a new session and exits: before, one daemon per
    restart stayed behind (re-parented to Patrol), and all survived Patrol's shutdown."""
    script(tmp_path, "leaver", "setsid sleep 301 &\nsleep 0.3\nexit 1\n")
    script(tmp_path, "keeper", "setsid sleep 302 &\nexec sleep 300\n")
    apps = {
        "leaver": patrol.app(1, binary="leaver", **{"backoff-reset": 0.1, "stop-timeout": 1}),
        "keeper": patrol.app(1, binary="keeper", **{"stop-timeout": 1}),
    }
    p = patrol.start(patrol.config(apps=apps), env=UNITTEST_ENV)

    def daemons(seconds: str) -> list[int]:
        found = []
        for pid in pids_with_marker(patrol.marker):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", seconds.encode()]:
                    found.append(pid)
            except OSError:
                pass
        return found

    entry(p, "leaver", lambda e: len(e.get("history", [])) >= 8, 20, "eight instances of the leaver")
    assert len(daemons("301")) <= 2  # the running instance's, and maybe one being stopped
    kept = daemons("302")
    assert len(kept) == 1  # the running keeper's own daemon is left alone
    assert p.terminate() == 0
    assert daemons("301") == [] and daemons("302") == []


# -- F12: backoff cannot overflow -----------------------------------------------------------


def test_f12_a_long_crash_loop_keeps_restarting_without_overflow(patrol, tmp_path):
    """factor 100 overflows a float at the 157th quick failure; before, OverflowError in
    the exit callback left the app stopped for good."""
    script(tmp_path, "crash", "exit 3\n")
    app = patrol.app(1, binary="crash", **{"backoff-base": 0, "backoff-factor": 100, "backoff-max": 0.001})
    p = patrol.start(patrol.config(apps={"c": app}, history=5))
    entry(p, "c", lambda e: e.get("restarts", 0) >= 200, 60, "200 restarts")
    assert "exit callback failed" not in p.log() and "OverflowError" not in p.log()


def test_f12_backoff_is_computed_without_overflow():
    assert capped_exponential(0.1, 2, 1024, 30) == 30  # ~8.5 h of quick failures with defaults
    assert capped_exponential(0.1, 2, 10**9, 30) == 30
    assert capped_exponential(1, 1e308, 3, 30) == 30
    assert capped_exponential(0.1, 2, 3, 30) == pytest.approx(0.8)
    assert capped_exponential(5, 1, 10**6, 30) == 5
    assert capped_exponential(0, 100, 10**6, 30) == 0
    assert capped_exponential(0.1, 2, 2000, float("inf")) == float("inf")


def test_f12_services_back_off_without_overflow(tmp_path):
    from patrol.plugin.model import PatrolConfig
    from patrol.plugin.loader import Plugins
    from patrol.engine.service_runner import BACKOFF_MAX
    from patrol.engine.supervisor import Supervisor
    from patrol.testing import load_item

    service = load_item("services", {"name": "S", "service": "s", "management": "service"}, "s")
    # the loader gives a float tick (a plain int would hide the overflow in a big int)
    sup = Supervisor(PatrolConfig(apps={}, services={"s": service}, tick_every=15.0), Plugins(strict=True))

    async def fail_many() -> float:
        sup.loop = asyncio.get_running_loop()
        runner = sup.services["s"]
        runner.failures = 1024  # the 1,025th failed start overflowed
        runner._start_failed("start: exit code 1")
        runner._reset_backoff()
        return runner.backoff_delay or BACKOFF_MAX

    assert asyncio.run(fail_many()) == BACKOFF_MAX


@pytest.mark.parametrize("key,value,message", [
    ("backoff-factor", 1e308, "backoff-factor: must be at most 100 (got 1e+308)"),
    ("backoff-factor", 101, "backoff-factor: must be at most 100 (got 101)"),
    ("backoff-base", 1e6, "backoff-base: must be at most 86400 (got 1e+06)"),
    ("backoff-max", 1e300, "backoff-max: must be at most 86400 (got 1e+300)"),
])
def test_f12_config_bounds_the_backoff_keys(patrol, tmp_path, key, value, message):
    app = patrol.app(1, **{key: value})
    assert any(message in e for e in item_errors("apps", app, "web"))
    config = tmp_path / "patrol.json"
    config.write_text(json.dumps({"apps": {"web": app}}))
    out = subprocess.run([sys.executable, "-m", "patrol", "check", str(config)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and f"{config}: apps.web.{message}" in out.stdout + out.stderr


# -- P4 / P5: what the state says -----------------------------------------------------------


def test_p4_ping_apps_wait_for_the_first_ping_visibly(patrol):
    """During the startup grace (2 x ping-timeout), an http app that has not pinged is
    ``waiting``, with the reason, in the API and the GUI (before: ``stopped``, no reason)."""
    p = patrol.start(patrol.config(apps={"web": patrol.app(3)}), env=UNITTEST_ENV)  # grace 6 s
    found = p.app("web")
    assert found["state"] == "waiting", found
    assert found["last-reason"] == "waiting for the first ping (up to 6 s)"
    page = p.get("/")
    assert 'data-state="waiting"' in page and "waiting for the first ping (up to 6 s)" in page
    entry(p, "web", lambda e: e["state"] == "running", 15, "spawned after the grace")
    assert "last-reason" not in p.app("web")


def test_p5_a_new_instance_does_not_show_the_previous_disable_as_its_reason(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(1)}))
    pid = p.running_pid("t", ready=True)
    p.api(id="t", group="app", toggle=2)
    assert entry(p, "t", lambda e: e["state"] == "disabled", 10, "disabled")["last-reason"] == "disabled"
    p.api(id="t", group="app", toggle=1)
    p.running_pid("t", other_than=pid)
    assert "last-reason" not in p.app("t")


# -- the ownership rules, in-process with real processes -------------------------------------


def test_ownership_proof_spawn_descendants_marker_and_pid_reuse():
    owners = ownership.Ownership()
    plain = {k: v for k, v in os.environ.items() if k != "PATROL_ID"}
    launcher = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, env=plain,
                                start_new_session=True)
    marked = subprocess.Popen(["sleep", "300"], env={**plain, "PATROL_ID": "other"})
    unrelated = subprocess.Popen(["sleep", "300"], env=plain)
    try:
        child = int(launcher.stdout.readline())
        assert owners.spawned("app/a", launcher.pid) is not None
        assert owners.owner(launcher.pid) == "app/a"
        assert owners.owner(child) == "app/a"  # descends from it (ppid chain, later start)
        assert owners.belongs("app/a", child) and not owners.belongs("app/b", child)
        assert owners.owner(marked.pid) == "app/other"  # its PATROL_ID (Patrol's user started it)
        assert owners.owner(unrelated.pid) is None
        # a record whose start time is not the process's (the pid was reused): no proof
        start = ownership.stat(unrelated.pid).start
        stale = ownership.Ownership()
        stale._pids[unrelated.pid] = ("app/a", start - 1)
        assert stale.owner(unrelated.pid) is None
        assert stale.restored("app/a", unrelated.pid, start - 1) is False
    finally:
        os.killpg(launcher.pid, signal.SIGKILL)
        for proc in (launcher, marked, unrelated):
            proc.kill()
            proc.wait()


def test_reaper_keeps_one_watcher_per_pid():
    async def main() -> list[str]:
        reaper = Reaper(asyncio.get_running_loop())
        reaper.install()
        seen: list[str] = []
        proc = subprocess.Popen(["sleep", "0.2"])
        try:
            assert reaper.watch(proc.pid, lambda s: seen.append("owner"), owner="app/owner")
            assert reaper.watch(proc.pid, lambda s: seen.append("thief"), owner="app/thief") is False
            assert reaper.watcher(proc.pid) == "app/owner"
            deadline = time.monotonic() + 5
            while not seen and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            reaper.uninstall()
        return seen

    assert asyncio.run(main()) == ["owner"]
