"""App supervision beyond the original: backoff, stop escalation, execute-timeout, pid-app,
bad things apps do. Black-box against a real ``patrol run`` with real processes."""

import os
import signal
import subprocess
import time
from datetime import datetime

from patrol.testing import pid_alive, pids_with_marker, wait_for


def start_times(path):
    if not path.exists():
        return []
    return [float(line.split()[0]) for line in path.read_text().splitlines() if line.strip()]


def restart_delays(p, app):
    """Patrol's own wait before each restart of ``app``: from its log line of a run's
    close to that of the next spawn. The children's start stamps would add each child's
    start-up time, up to a second and more on a loaded machine, to the gaps."""
    delays, closed = [], None
    for record in p.log_records():
        if record.get("app") != app:
            continue
        if record.get("event") == "closed":
            closed = datetime.fromisoformat(record["timestamp"])
        elif record.get("event") == "spawned" and closed is not None:
            delays.append((datetime.fromisoformat(record["timestamp"]) - closed).total_seconds())
            closed = None
    return delays


def test_crash_loop_backs_off_exponentially_up_to_the_cap_and_resets(patrol, tmp_path):
    crash, starts = tmp_path / "crash", tmp_path / "starts"
    crash.touch()
    # backoff-reset 3: a crashing run counts as a quick failure even when its start-up
    # takes over a second (seen on a loaded machine with the usual 1 s)
    app = patrol.app(
        1,
        env=["TESTAPP_EXIT=3", f"TESTAPP_EXIT_IF={crash}", f"TESTAPP_STARTLOG={starts}"],
        **{"backoff-base": 0.1, "backoff-factor": 2, "backoff-max": 0.8, "backoff-reset": 3.0},
    )
    p = patrol.start(patrol.config(apps={"loop": app}))
    wait_for(lambda: len(restart_delays(p, "loop")) >= 6, 20, "seven starts of the crash loop")
    delays = restart_delays(p, "loop")[:6]
    expected = [0, 0.1, 0.2, 0.4, 0.8, 0.8]  # first crash at once, then base * factor**n, capped
    for delay, want in zip(delays, expected):
        # at least the backoff; below the next rung of the ladder (a loaded machine adds
        # latency, never less wait): the capped ones stay under the uncapped 1.6
        assert want <= delay < want + 0.8, (delays, expected)
    entry = p.app("loop")
    assert entry["restarts"] >= 6 and entry["history"][-1]["exit-code"] == 3

    crash.unlink()  # the next start stays up
    unlinked = time.time()

    def stable():
        lines = starts.read_text().split()
        since, pid = float(lines[-2]), int(lines[-1])
        return since > unlinked and p.app("loop").get("pid") == pid and time.time() - since > 3.1

    wait_for(stable, 15, "an instance up for longer than backoff-reset")
    count = len(restart_delays(p, "loop"))
    crash.touch()
    os.kill(p.app("loop")["pid"], signal.SIGKILL)
    wait_for(lambda: len(restart_delays(p, "loop")) >= count + 3, 10, "restarts after the stable run")
    after = restart_delays(p, "loop")[count:count + 3]
    # the delay is back at the start of the ladder: at once (the stable run), at once
    # (the first quick failure), then the base (not reset, they would be the cap, 0.8)
    assert after[0] < 0.8 and after[1] < 0.8 and 0.1 <= after[2] < 0.8, after


def test_start_limit_gives_up_visibly_until_toggled(patrol, tmp_path):
    starts = tmp_path / "starts"
    # backoff-reset 60: under load a crasher's Python start took 1.7 s, past the default
    # reset (1 s), and that run no longer counted as a failure: 4 starts (seen with -n 4)
    app = patrol.app(1, env=["TESTAPP_EXIT=1", f"TESTAPP_STARTLOG={starts}"],
                     **{"backoff-base": 0.05, "start-limit": 3, "backoff-reset": 60})
    p = patrol.start(patrol.config(apps={"t": app}))
    wait_for(lambda: p.app("t").get("state") == "given-up", 10, "given-up state")
    assert len(start_times(starts)) == 3
    assert "gave up" in p.app("t")["last-reason"]
    p.api(id="t", group="app", toggle=1)  # enable again: a fresh set of tries
    wait_for(lambda: len(start_times(starts)) == 6 and p.app("t").get("state") == "given-up", 10)


def test_grandchild_ignoring_sigterm_is_killed_after_stop_timeout(patrol):
    app = patrol.app(1, env=["TESTAPP_GRANDCHILD=1"], **{"stop-timeout": 1})
    p = patrol.start(patrol.config(apps={"t": app}))
    pid = p.running_pid("t")
    wait_for(lambda: p.app_log_has(f"started, pid {pid},"), 10)
    family = wait_for(lambda: len(pids_with_marker(patrol.marker)) >= 3 and pids_with_marker(patrol.marker), 10)
    grandchild = [x for x in family if x not in (pid, p.pid)]
    assert grandchild
    p.api(id="t", group="app", toggle=2)
    wait_for(lambda: not any(pid_alive(x) for x in [pid, *grandchild]), 5, "the app and its grandchild gone")
    assert p.app("t")["history"][-1]["exit-code"] == 10  # the app itself obeyed SIGUSR1


def test_app_ignoring_every_signal_is_killed_and_shutdown_is_bounded(patrol):
    app = patrol.app(1, env=["TESTAPP_IGNORE=SIGUSR1,SIGUSR2,SIGTERM,SIGHUP"], **{"stop-timeout": 1})
    p = patrol.start(patrol.config(apps={"t": app}))
    pid = p.running_pid("t")
    wait_for(lambda: p.app_log_has(f"started, pid {pid},"), 10)
    began = time.monotonic()
    assert p.terminate(timeout=10) == 0
    assert time.monotonic() - began < 1 + 1.5  # stop-timeout + 1 s, plus process exit slack
    assert not pid_alive(pid)


def test_execute_timeout_kills_the_app_and_history_says_so(patrol, tmp_path):
    # the first instance's pid from the app itself: under load (-n 4) it was killed at its
    # execute-timeout before a /status/ poll saw it, and running_pid gave the second one's
    starts = tmp_path / "starts"
    app = patrol.app(1, env=[f"TESTAPP_STARTLOG={starts}"], **{"execute-timeout": 1})
    p = patrol.start(patrol.config(apps={"t": app}))
    first = wait_for(lambda: starts.exists() and "\n" in (text := starts.read_text()) and text, 10, "the first start")
    pid = int(first.split("\n")[0].split()[1])  # "<time> <pid>", a whole line
    record = wait_for(lambda: p.app("t").get("history") and p.app("t")["history"][0], 10)
    assert record["pid"] == pid and record["reason"] == "execute-timeout"
    assert record["exit-signal"] == "SIGKILL"
    from datetime import datetime

    lived = datetime.fromisoformat(record["stopped"]) - datetime.fromisoformat(record["started"])
    assert 0 <= lived.total_seconds() <= 3


def test_pid_app_daemon_that_double_forks_is_adopted_with_its_own_pid(patrol):
    p = patrol.start(patrol.config(apps={"d": patrol.app(2, env=["TESTAPP_DAEMONIZE=1"])}))
    pid = p.running_pid("d")
    assert int((p.workdir / "testapp.pid").read_text()) == pid
    assert p.app("d").get("history") is None  # the launcher's exit closed nothing
    os.kill(pid, signal.SIGKILL)
    new = p.running_pid("d", other_than=pid)
    record = p.app("d")["history"][0]
    assert record["pid"] == pid and record["exit-signal"] == "SIGKILL"  # reaped as subreaper
    assert new != pid


def test_pid_app_already_running_is_adopted_not_duplicated(patrol):
    env = {**os.environ, "PATROL_ID": "d", "PATROL_KEEPALIVE": "2", "PATROL_TEST_MARKER": patrol.marker,
           "PATROL_PID": str(patrol.tmp_path / "testapp.pid")}
    before = subprocess.Popen([str(patrol.testapp)], cwd=patrol.tmp_path, env=env)
    try:
        wait_for(lambda: (patrol.tmp_path / "testapp.pid").exists(), 10)
        p = patrol.start(patrol.config(apps={"d": patrol.app(2)}))
        assert p.running_pid("d") == before.pid
        assert len(pids_with_marker(patrol.marker)) == 2  # Patrol and the one app
    finally:
        before.kill()
        before.wait()


def test_stale_pid_file_of_a_younger_process_is_not_adopted(patrol, tmp_path):
    pidfile = tmp_path / "testapp.pid"
    old = time.time() - 60
    squatter = subprocess.Popen(["sleep", "60"])  # reused the pid after the file was written
    try:
        pidfile.write_text(f"{squatter.pid}\n")
        os.utime(pidfile, (old, old))
        p = patrol.start(patrol.config(apps={"d": patrol.app(2)}))
        pid = p.running_pid("d")
        assert pid != squatter.pid and pid_alive(squatter.pid)
    finally:
        squatter.kill()
        squatter.wait()


def test_pid_verify_refuses_a_process_running_another_program(patrol, tmp_path):
    squatter = subprocess.Popen(["sleep", "60"])
    try:
        wait_for(lambda: pid_alive(squatter.pid), 5)
        (tmp_path / "testapp.pid").write_text(f" \n\t{squatter.pid}\n")  # whitespace is fine
        p = patrol.start(patrol.config(apps={"d": patrol.app(2, **{"pid-verify": True})}))
        assert p.running_pid("d") != squatter.pid
    finally:
        squatter.kill()
        squatter.wait()


def test_missing_binary_is_reported_and_retried_without_blocking_others(patrol):
    apps = {"ghost": patrol.app(1, binary="no-such-binary", **{"backoff-base": 0.05}), "ok": patrol.app(1)}
    p = patrol.start(patrol.config(apps=apps))
    p.running_pid("ok")
    entry = wait_for(lambda: p.app("ghost").get("last-reason") and p.app("ghost"), 10)
    assert "cannot execute" in entry["last-reason"] and "no-such-binary" in entry["last-reason"]
    assert entry["state"] in ("backoff", "stopped")


def test_binary_not_executable_and_log_dir_not_creatable(patrol, tmp_path):
    (tmp_path / "plain.txt").write_text("not a program")
    (tmp_path / "afile").write_text("")
    apps = {
        "noexec": patrol.app(1, binary="plain.txt"),
        "nolog": patrol.app(1, **{"log-directory": "afile/logs"}),
    }
    p = patrol.start(patrol.config(apps=apps))
    assert "Permission denied" in wait_for(lambda: p.app("noexec").get("last-reason"), 10)
    # the log directory cannot be made: the app runs, its output is dropped, and it says why
    p.running_pid("nolog")
    fault = wait_for(lambda: p.app("nolog").get("fault"), 10, "the log problem as the app's fault")
    assert fault.startswith("cannot write the log file") and "afile/logs" in fault


def test_restart_toggle_sends_sigusr2_and_history_says_restart(patrol):
    p = patrol.start(patrol.config(apps={"t": patrol.app(1)}))
    pid = p.running_pid("t")
    wait_for(lambda: p.app_log_has(f"started, pid {pid},"), 10)
    status, pre = p.api(id="t", group="app", toggle=3)
    assert status == 200 and "restart" not in pre  # the pre-request snapshot
    new = p.running_pid("t", other_than=pid)
    record = p.app("t")["history"][-1]
    assert record["pid"] == pid and record["exit-code"] == 12 and record["restart"] is True  # spec 10.23 fixed
    assert new != pid and "restart" not in p.app("t")


def test_a_chatty_app_has_its_log_rotated(patrol):
    from patrol.testing import UNITTEST_ENV

    app = patrol.app(1, env=["TESTAPP_PRINT_EVERY=0.001"], **{"log-max-bytes": 4096, "log-max-files": 50})
    p = patrol.start(patrol.config(apps={"t": app}), env=UNITTEST_ENV)
    p.running_pid("t")
    rotated = wait_for(lambda: list((p.workdir / "logs").rglob("*.stdout.log.1")), 10, "a rotated log")
    current = rotated[0].with_suffix("")
    assert current.exists()
    generations = sorted(current.parent.glob(current.name + ".*"), key=lambda f: int(f.suffix[1:]))
    for generation in generations:  # renamed when full: never beyond the limit, cut between lines
        assert 0 < generation.stat().st_size <= 4096 and generation.read_bytes().endswith(b"\n")
    assert "started" in generations[-1].read_text()  # the first lines are kept in the oldest file


def test_a_pid_only_a_ping_named_never_delays_shutdown(patrol):
    """Anyone can ping with any live pid (here: the test's own, during the startup grace);
    Patrol must neither signal it nor wait for it when it stops."""
    app = patrol.app(3, env=["TESTAPP_PING_DELAY=1000"], **{"stop-timeout": 5})
    p = patrol.start(patrol.config(apps={"web": app}))
    status, _ = p.api(id="web", group="app", ping=True, pid=os.getpid())
    assert status == 200 and p.running_pid("web") == os.getpid()
    began = time.monotonic()
    assert p.terminate() == 0
    assert time.monotonic() - began < 3  # not stop-timeout (5 s) + 5 s
    assert pid_alive(os.getpid())
