"""Patrol as a container's init: pid 1 of a real PID namespace (``unshare --pid --fork
--mount-proc``, as root), or ``patrol run --init``.

As init it reaps every process re-parented to it (not only its apps' children), turns
SIGTERM into a shutdown of every app within their stop timeouts, and with ``exit-with``
ends when its main app ends, with that app's exit code (``docker run``'s main process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from patrol.testing import PatrolFactory, PatrolProcess, wait_for
from patrol.testing.users import require_root

#: an app that leaves orphans behind: each ``( ... &)`` subshell exits at once, so its
#: background child is re-parented (to Patrol, the nearest subreaper) and exits later
ORPHANS = """#!/bin/sh
for i in 1 2 3 4 5 6 7 8 9 10; do (sleep 0.2 &); (setsid sh -c 'sleep 0.2' &); done
echo orphans made
exec sleep 300
"""


def in_namespace(patrol: PatrolFactory, config: dict[str, object]) -> PatrolProcess:
    """``patrol run`` as pid 1 of a new PID namespace (killed with it at teardown)."""
    require_root()
    command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-m", "patrol"]
    process = PatrolProcess(patrol.tmp_path, config, patrol.marker, command=command)
    patrol.processes.append(process)
    return process.start()


def namespace_init(p: PatrolProcess) -> int:
    """The host pid of the namespace's pid 1 (Patrol), the one child of ``unshare``."""
    def child() -> int | None:
        try:
            with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                found = f.read().split()
        except OSError:
            return None
        return int(found[0]) if found else None
    return wait_for(child, 10, "the namespace's init")


def namespace_processes(init: int) -> dict[int, str]:
    """Every process in the PID namespace of ``init`` (host pid -> state letter)."""
    ns = os.readlink(f"/proc/{init}/ns/pid")
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                continue
            with open(f"/proc/{entry}/stat") as f:
                found[int(entry)] = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
    return found


def script(directory: Path, name: str, text: str) -> str:
    path = directory / name
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def test_as_pid_1_it_reaps_every_orphan_its_own_and_others(patrol, tmp_path):
    app = patrol.app(1, binary=script(tmp_path, "orphans.sh", ORPHANS))
    p = in_namespace(patrol, patrol.config(apps={"orphans": app}))
    init = namespace_init(p)
    with open(f"/proc/{init}/status") as f:
        assert [line.split()[1:] for line in f if line.startswith("NSpid:")][0][-1] == "1"  # Patrol is pid 1
    wait_for(lambda: p.app_log_has("orphans made"), 10, "the app's orphans")
    # a process entering the namespace from outside (``docker exec``) leaves orphans too:
    # they are re-parented to pid 1 itself, not to any app
    subprocess.run(["nsenter", f"--target={init}", "--pid", "--mount", "sh", "-c",
                    "for i in 1 2 3 4 5; do (sleep 0.2 &); done"], check=True, timeout=10)

    def settled() -> bool:
        states = namespace_processes(init)
        return "Z" not in states.values() and len(states) <= 3  # Patrol, the app's sleep, no leftovers
    wait_for(settled, 10, f"no zombie left in the namespace: {namespace_processes(init)}")


def test_sigterm_to_pid_1_stops_every_app_and_exits_0_within_the_stop_timeout(patrol, tmp_path):
    stubborn = patrol.app(1, env=["TESTAPP_IGNORE=SIGUSR1,SIGTERM"], **{"stop-timeout": 2})
    p = in_namespace(patrol, patrol.config(apps={"stubborn": stubborn, "polite": patrol.app(1)}))
    init = namespace_init(p)
    p.running_pid("stubborn", ready=True)
    p.running_pid("polite", ready=True)
    sent = time.monotonic()
    os.kill(init, signal.SIGTERM)
    assert p.proc is not None
    assert p.proc.wait(10) == 0
    assert time.monotonic() - sent < 2 + 1  # stop-timeout + 1 s
    closed = {r.get("app"): r.get("reason") for r in p.log_records() if r.get("event") == "closed"}
    assert closed == {"stubborn": "shutdown", "polite": "shutdown"}, closed


def test_sighup_to_pid_1_reloads_the_config(patrol, tmp_path):
    p = in_namespace(patrol, patrol.config(apps={"a": patrol.app(1)}))
    init = namespace_init(p)
    first = p.running_pid("a")
    p.config["apps"]["b"] = patrol.app(1)
    p.write_config()
    os.kill(init, signal.SIGHUP)
    wait_for(lambda: "b" in p.status()["apps"], 10, "the reload")
    p.running_pid("b")
    assert p.app("a")["pid"] == first  # what did not change keeps running


def test_as_pid_1_with_exit_with_the_main_apps_exit_code_is_patrols(patrol, tmp_path):
    main = patrol.app(1, binary=script(tmp_path, "main.sh", "#!/bin/sh\nsleep 0.5\nexit 7\n"))
    p = in_namespace(patrol, patrol.config(apps={"main": main, "side": patrol.app(1)}, **{"exit-with": "main"}))
    assert p.proc is not None
    assert p.proc.wait(15) == 7
    closed = {r.get("app"): r.get("reason") for r in p.log_records() if r.get("event") == "closed"}
    assert closed["side"] == "shutdown" and "main" in closed


@pytest.mark.parametrize(("body", "code"), [("exit 7", 7), ("kill -9 $$", 128 + 9)])
def test_exit_with_in_a_plain_patrol_run_init(patrol, tmp_path, body, code):
    main = patrol.app(1, binary=script(tmp_path, "main.sh", f"#!/bin/sh\nsleep 0.3\n{body}\n"))
    config = patrol.config(apps={"main": main, "side": patrol.app(1)}, **{"exit-with": "main"})
    wrapper = script(tmp_path, "patrol-init", f'#!/bin/sh\nexec "{sys.executable}" -m patrol "$@" --init\n')
    p = PatrolProcess(patrol.tmp_path, config, patrol.marker, command=[wrapper])  # patrol run CONFIG ... --init
    patrol.processes.append(p)
    p.start()
    assert p.proc is not None
    assert p.proc.wait(15) == code


def test_exit_with_an_app_that_cannot_start_exits_127(patrol, tmp_path):
    main = patrol.app(1, binary=str(tmp_path / "missing"))
    p = patrol.start(patrol.config(apps={"main": main}, **{"exit-with": "main"}), wait=False)
    assert p.proc is not None
    assert p.proc.wait(15) == 127
