"""Bulk actions, their outcomes, the status views and shell completion, against a live
``patrol run`` with real processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from patrol.testing import PatrolFactory, PatrolProcess, pid_alive, wait_for


def patrol_cli(*args: str, p: PatrolProcess, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_") and k != "NO_COLOR"}
    full_env.update({"PATROL_URL": f"http://{p.http}", **(env or {})})
    return subprocess.run([sys.executable, "-m", "patrol", *args], capture_output=True, text=True, env=full_env,
                          timeout=60)


def test_stop_several_ids_and_a_glob_waits_and_says_each_outcome_then_restart_all(patrol: PatrolFactory) -> None:
    ids = ("a", "b", "w-1", "w-2", "other")
    p = patrol.start(patrol.config(apps={i: patrol.app(1) for i in ids}))
    pids = {i: p.running_pid(i) for i in ids}
    stopped = patrol_cli("stop", "a", "b", "w-*", p=p)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    lines = stopped.stdout.splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == ["a", "b", "w-1", "w-2"]  # one line each
    # testapp ends with exit code 10 on Patrol's stop signal (SIGUSR1)
    assert all(re.fullmatch(r"[\w-]+: stopped \(exit code 10 after \d+\.\d s\)", line) for line in lines), lines
    for i in ("a", "b", "w-1", "w-2"):  # gone when the command returned, not later
        assert not pid_alive(pids[i]), i
        assert p.app(i)["state"] == "disabled"
    assert pid_alive(pids["other"]) and p.app("other")["state"] == "running"

    started = patrol_cli("start", "all", p=p)
    assert started.returncode == 0, started.stdout + started.stderr
    assert sorted(started.stdout.splitlines()) == sorted(
        [f"{i}: running (pid {p.app(i)['pid']})" for i in ("a", "b", "w-1", "w-2")]
        + [f"other: running (pid {pids['other']}) (it was running)"])
    before = {i: p.app(i)["pid"] for i in ids}
    restarted = patrol_cli("restart", "all", p=p)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    after = {i: p.app(i)["pid"] for i in ids}
    assert all(after[i] != before[i] for i in ids)  # every app is a new instance
    assert sorted(restarted.stdout.splitlines()) == sorted(f"{i}: restarted (pid {after[i]})" for i in ids)


def test_a_stop_that_cannot_complete_in_the_timeout_exits_1_and_says_why(patrol: PatrolFactory) -> None:
    stubborn = patrol.app(1, env=["TESTAPP_IGNORE=SIGUSR1"], **{"stop-timeout": 1})
    p = patrol.start(patrol.config(apps={"stubborn": stubborn}))
    pid = p.running_pid("stubborn")
    late = patrol_cli("stop", "stubborn", "--timeout", "0.5", p=p)
    assert late.returncode == 1
    assert re.fullmatch(r"stubborn: still stopping after 0\.5 s \(stopping.*\)\n", late.stdout), late.stdout
    wait_for(lambda: not pid_alive(pid), 10, "Patrol's SIGKILL after the stop timeout")
    unknown = patrol_cli("stop", "nope", p=p)
    assert unknown.returncode == 1 and "unknown app or service: nope" in unknown.stderr
    again = patrol_cli("start", "stubborn", p=p)  # then a stop that takes its SIGKILL, waited for
    assert again.returncode == 0, again.stdout + again.stderr
    p.running_pid("stubborn", other_than=pid, ready=True)  # its handlers are in place: SIGUSR1 is ignored
    killed = patrol_cli("stop", "stubborn", p=p)
    assert killed.returncode == 0 and re.fullmatch(r"stubborn: stopped \(SIGKILL after 1\.\d s\)\n", killed.stdout), \
        killed.stdout
    no_wait = patrol_cli("start", "stubborn", "--no-wait", p=p)
    assert no_wait.stdout == "stubborn: enable requested (it was disabled)\n"


def test_status_detail_shows_last_exits_and_log_lines_and_the_table_counts_states(patrol: PatrolFactory) -> None:
    apps = {"web": patrol.app(1, name="Web Server"), "off": patrol.app(1, disabled=True),
            "crash": patrol.app(1, env=["TESTAPP_EXIT=3"], **{"backoff-base": 60, "backoff-max": 60})}
    p = patrol.start(patrol.config(apps=apps))
    pid = p.running_pid("web")
    for _ in range(2):
        p.api(id="web", group="app", toggle=3)
        pid = p.running_pid("web", other_than=pid)
    wait_for(lambda: p.app("crash").get("state") in ("backoff", "given-up"), 15, "the crash loop")
    detail = patrol_cli("status", "web", p=p)
    assert detail.returncode == 0, detail.stderr
    out = detail.stdout
    assert out.startswith("● web - Web Server (app)\n") and "\x1b[" not in out
    assert re.search(rf"PID: {pid}\n", out) and "Restarts: 2" in out and "Log (stdout): " in out
    exits = out.split("Last exits:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(exits) == 2 and all("killed by" in e or "exit code 12" in e for e in exits), exits
    assert "(restart)" in exits[0]
    lines = out.split("log lines:\n", 1)[1].splitlines()
    assert f"  testapp web started, pid {pid}, keepalive 1" in lines
    assert "  stderr testapp web stderr line" in lines

    table = patrol_cli("status", p=p)
    assert table.returncode == 0 and "\x1b[" not in table.stdout
    rows = table.stdout.splitlines()
    assert rows[1].startswith("crash ")  # problems first
    assert re.fullmatch(r"1 (backoff|given-up), 1 running, 1 disabled", rows[-1]), rows[-1]
    no_color = patrol_cli("status", "web", p=p, env={"NO_COLOR": "1"})
    assert "\x1b[" not in no_color.stdout


def test_status_colours_only_on_a_terminal_and_never_with_no_color(patrol: PatrolFactory) -> None:
    p = patrol.start(patrol.config(apps={"web": patrol.app(1)}))
    p.running_pid("web")
    script = shutil.which("script")
    assert script, "util-linux script(1) gives the client a terminal"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_") and k != "NO_COLOR"}
    env["PATROL_URL"] = f"http://{p.http}"
    command = f"{sys.executable} -m patrol status"
    tty = subprocess.run([script, "-qec", command, "/dev/null"], capture_output=True, text=True, env=env, timeout=30)
    assert "\x1b[32mrunning" in tty.stdout, tty.stdout
    plain = subprocess.run([script, "-qec", command, "/dev/null"], capture_output=True, text=True,
                           env={**env, "NO_COLOR": "1"}, timeout=30)
    assert "running" in plain.stdout and "\x1b[3" not in plain.stdout


def test_bash_completion_completes_commands_and_ids_from_the_running_patrol(patrol: PatrolFactory,
                                                                            tmp_path: Path) -> None:
    apps = {"web": patrol.app(1), "worker-1": patrol.app(1, disabled=True), "wal": patrol.app(1, disabled=True)}
    p = patrol.start(patrol.config(apps=apps))
    script = patrol_cli("completion", "bash", p=p)
    assert script.returncode == 0, script.stderr
    (tmp_path / "patrol.bash").write_text(script.stdout)
    shim = tmp_path / "bin" / "patrol"  # the ``patrol`` the script calls: this checkout's
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m patrol "$@"\n')
    shim.chmod(0o755)

    def complete(*words: str) -> list[str]:
        line = " ".join(("patrol",) + words)
        program = (f'source {tmp_path / "patrol.bash"}; complete -p patrol >/dev/null || exit 9; '
                   f'COMP_WORDS=({line}); COMP_CWORD={len(words)}; COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}; '
                   '_patrol; printf "%s\\n" "${COMPREPLY[@]}"')
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PATROL_")},
               "PATH": f"{shim.parent}:{os.environ['PATH']}", "PATROL_URL": f"http://{p.http}"}
        done = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                              env=env, timeout=30)
        assert done.returncode == 0, done.stderr
        return sorted(filter(None, done.stdout.splitlines()))

    assert complete("res") == ["restart"]
    assert complete("restart", "w") == ["wal", "web", "worker-1"]
    assert complete("logs", "--std") == ["--stderr", "--stdout"]
    p.terminate()
    assert complete("restart", "w") == []  # Patrol gone: nothing, silently


def test_an_id_in_both_groups_needs_group_and_start_stop_are_in_help(patrol: PatrolFactory) -> None:
    script = patrol.tmp_path / "fake-service"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    services = {"dup": {"management": 1, "service": "dup", "name": "Dup service", "service-command": str(script)}}
    p = patrol.start(patrol.config(apps={"dup": patrol.app(1, name="Dup app")}, services=services))
    pid = p.running_pid("dup")
    both = patrol_cli("restart", "dup", p=p)
    assert both.returncode == 1 and "give --group app or --group service" in both.stderr
    assert p.app("dup")["pid"] == pid  # nothing was done
    detail = patrol_cli("status", "dup", "--group", "app", p=p)
    assert detail.returncode == 0 and detail.stdout.startswith("● dup - Dup app (app)\n")
    restarted = patrol_cli("restart", "dup", "--group", "app", p=p)
    assert restarted.returncode == 0 and restarted.stdout == f"dup: restarted (pid {p.app('dup')['pid']})\n"
    usage = patrol_cli("--help", p=p).stdout
    assert "enable (start)" in usage and "disable (stop)" in usage, usage


def test_zsh_and_fish_scripts_name_every_command_and_ask_patrol_for_ids() -> None:
    """(zsh and fish are not installed here: their scripts are checked as text.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    run = [sys.executable, "-m", "patrol", "completion"]
    zsh = subprocess.run([*run, "zsh"], capture_output=True, text=True, env=env, timeout=30).stdout
    fish = subprocess.run([*run, "fish"], capture_output=True, text=True, env=env, timeout=30).stdout
    for command in ("logs", "start", "stop", "restart", "reload", "completion"):
        assert re.search(rf"\b{command}\b", zsh.split("\n", 8)[6]) and f" {command}" in fish.split("\n", 3)[2]
    assert zsh.startswith("#compdef patrol\n") and "patrol _ids" in zsh and "(command patrol _ids 2>/dev/null)" in fish
    wrong = subprocess.run([*run, "tcsh"], capture_output=True, text=True, env=env, timeout=30)
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr


def test_status_watch_redraws_the_table_until_interrupted(patrol: PatrolFactory) -> None:
    p = patrol.start(patrol.config(apps={"web": patrol.app(1)}))
    p.running_pid("web")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_") and k != "NO_COLOR"}
    env["PATROL_URL"] = f"http://{p.http}"
    # started with SIGINT ignored, as from a script's ``trap '' INT`` (or a test runner's
    # worker that ignores it): Ctrl-C must still end the watch (a CI run met this)
    watch = subprocess.Popen([sys.executable, "-m", "patrol", "status", "--watch", "0.1"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert watch.stdout is not None
        headers = 0
        for line in watch.stdout:  # blocks on the real output: three redraws, then Ctrl-C
            headers += line.startswith("Every 0.1 s: patrol status")
            if headers == 3:
                break
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=10)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert headers == 3 and watch.returncode == 0 and "Traceback" not in err
    assert "\x1b[" not in out  # piped: no clearing of the screen, no colours
