"""Who and with what an app runs: ``user``, ``group``, ``umask``, ``nice``, ``limits``.

Real ``patrol run`` processes as root (CI runs the suite as root), a real user made for
each test (``system_user``), and the child's own ``/proc`` entries as the judge.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from patrol.testing import PatrolFactory, wait_for
from patrol.testing.users import SystemUser

#: the app: reports what it was given before anything else, then becomes ``sleep`` (same pid)
REPORT = """#!/bin/sh
echo "nofile=$(ulimit -n) nice=$(nice) umask=$(umask) home=$HOME user=$USER logname=$LOGNAME shell=$SHELL"
exec sleep 300
"""


def report_app(patrol: PatrolFactory, directory: Path, **keys: object) -> dict[str, object]:
    script = directory / "report.sh"
    script.write_text(REPORT)
    script.chmod(0o755)
    return patrol.app(1, binary=str(script), **keys)


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def proc_limit(pid: int, name: str) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith(name):
                soft, hard = line[len(name):].split()[:2]
                return soft, hard
    raise AssertionError(f"no {name!r} in /proc/{pid}/limits")


def proc_nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


def test_an_app_runs_as_its_user_with_its_umask_limits_and_nice(patrol, tmp_path, system_user: SystemUser,
                                                                 public_dir):
    app = report_app(patrol, public_dir, user=system_user.name, umask="027", nice=5,
                     limits={"nofile": 256, "core": 0})
    p = patrol.start(patrol.config(apps={"a": app}))
    pid = p.running_pid("a")
    line = wait_for(lambda: next((f.read_text() for f in (tmp_path / "logs").rglob("*.stdout.log")
                                  if "nofile=" in f.read_text()), None), 10, "the app's report")

    status = proc_status(pid)
    assert status["Uid"].split() == [str(system_user.uid)] * 4
    assert status["Gid"].split() == [str(system_user.gid)] * 4
    assert set(status["Groups"].split()) == {str(system_user.gid), str(system_user.extra_gid)}
    assert proc_limit(pid, "Max open files") == ("256", "256")
    assert proc_limit(pid, "Max core file size") == ("0", "0")
    assert proc_nice(pid) == 5
    # what the program saw as its very first action: no moment ran with Patrol's limits
    assert "nofile=256 nice=5 umask=0027" in line
    assert f"home={system_user.home} user={system_user.name} logname={system_user.name} shell=/bin/sh" in line

    logs = [f for f in (tmp_path / "logs").rglob("*") if f.is_file()]
    assert logs
    for f in logs:
        st = f.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (system_user.uid, system_user.gid, 0o640), f
    for d in [d for d in (tmp_path / "logs").rglob("*") if d.is_dir()] + [tmp_path / "logs"]:
        assert d.stat().st_uid == system_user.uid, d  # made by Patrol for this app: its user's


def test_env_set_in_the_config_wins_over_the_users_defaults(patrol, tmp_path, system_user: SystemUser,
                                                            public_dir):
    app = report_app(patrol, public_dir, user=system_user.name, env=["HOME=/srv/elsewhere"])
    p = patrol.start(patrol.config(apps={"a": app}))
    p.running_pid("a")
    wait_for(lambda: p.app_log_has(f"home=/srv/elsewhere user={system_user.name}"), 10, "the app's report")


def test_a_group_and_a_user_given_by_number(patrol, tmp_path, system_user: SystemUser, public_dir):
    app = report_app(patrol, public_dir, user=system_user.uid, group=system_user.extra_group)
    p = patrol.start(patrol.config(apps={"a": app}))
    status = proc_status(p.running_pid("a"))
    assert status["Uid"].split()[0] == str(system_user.uid)
    assert status["Gid"].split()[0] == str(system_user.extra_gid)


def test_a_step_the_launcher_cannot_take_is_a_start_failure_with_its_reason(patrol, tmp_path, system_user,
                                                                            public_dir):
    missing = public_dir / "no-such-program"
    app = patrol.app(1, binary=str(missing), user=system_user.name, **{"backoff-base": 30, "backoff-max": 30})
    p = patrol.start(patrol.config(apps={"a": app}))
    entry = wait_for(lambda: (e := p.app("a")).get("last-reason") and e, 10, "the start failure")
    assert entry["last-reason"] == f"cannot execute {missing}: No such file or directory"
    assert entry["state"] in ("backoff", "stopped") and "Traceback" not in p.log()


def test_without_root_patrol_check_refuses_user_naming_the_key(system_user: SystemUser, public_dir,
                                                               python_for_everyone):
    config = public_dir / "config.json"
    config.write_text('{"apps": {"web": {"keepalive": 1, "name": "w", "binary": "/bin/sleep", '
                      '"working-directory": "/tmp", "log-directory": "logs", "pid-path": "w.pid", '
                      f'"user": "{system_user.name}"}}}}}}')
    config.chmod(0o644)
    out = subprocess.run(["setpriv", f"--reuid={system_user.uid}", f"--regid={system_user.gid}", "--init-groups",
                          sys.executable, "-m", "patrol", "check", str(config)],
                         capture_output=True, text=True, timeout=60, cwd="/", env={**os.environ, "HOME": "/"})
    assert out.returncode == 1, out
    assert f"apps.web.user: needs Patrol to run as root (it runs as uid {system_user.uid})" in out.stderr


#: a daemon as ``pid-app`` expects one: it forks away and writes its pid file itself
DAEMON = """#!/bin/sh
sleep 300 </dev/null >/dev/null 2>&1 &
echo $! > "$1"
"""


def test_a_pid_app_that_runs_as_its_user_is_adopted_from_its_pid_file(patrol, system_user: SystemUser,
                                                                       public_dir):
    script = public_dir / "daemon.sh"
    script.write_text(DAEMON)
    script.chmod(0o755)
    run = public_dir / "run"  # where the user may write its pid file
    run.mkdir()
    os.chown(run, system_user.uid, system_user.gid)
    app = patrol.app(2, binary=str(script), args=[str(run / "d.pid")], user=system_user.name,
                     **{"pid-path": str(run / "d.pid")})
    p = patrol.start(patrol.config(apps={"a": app}))
    pid = wait_for(lambda: (e := p.app("a")).get("state") == "running" and (run / "d.pid").exists()
                   and e.get("pid") == int((run / "d.pid").read_text() or 0) and e["pid"], 15, "the daemon adopted")
    assert proc_status(pid)["Uid"].split()[0] == str(system_user.uid)


def test_an_exec_probe_runs_as_the_app_runs(patrol, system_user: SystemUser, public_dir):
    """A program run on the app's behalf gets the app's user, nice and umask, never
    Patrol's root: the probe passes only when it does."""
    check = public_dir / "check.sh"
    check.write_text(f'#!/bin/sh\n[ "$(id -u)" = "{system_user.uid}" ] && [ "$(nice)" = "5" ] '
                     '&& [ "$(umask)" = "0027" ]\n')
    check.chmod(0o755)
    app = report_app(patrol, public_dir, user=system_user.name, nice=5, umask="027",
                     readiness={"exec": [str(check)], "period": 0.1})
    p = patrol.start(patrol.config(apps={"a": app}))
    wait_for(lambda: p.app("a").get("state") == "ready", 10, f"the probe to pass: {p.app('a')}")
