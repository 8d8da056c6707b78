"""``env-file``: read at each start, merged before ``env``; a bad file is a start failure
that names the file and the line, never a crash. With ``user``, it is read as that user."""

from __future__ import annotations

import os

from patrol.testing import PatrolFactory, wait_for
from patrol.testing.users import SystemUser


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        entries = f.read().split(b"\0")
    return dict(e.decode().partition("=")[::2] for e in entries if b"=" in e)


def failure(p, app_id: str) -> str:
    return wait_for(lambda: p.app(app_id).get("last-reason"), 10, f"{app_id}'s start failure")


def quiet(**keys: object) -> dict[str, object]:
    """No quick retries: one failure is what the test looks at."""
    return {"backoff-base": 30, "backoff-max": 30, **keys}


def test_env_file_values_reach_the_child_and_env_overrides_them(patrol: PatrolFactory, tmp_path):
    (tmp_path / "app.env").write_text('# settings\nFROM_FILE="a value"\nexport BOTH=file\nPATROL_ID=forged\n')
    app = patrol.app(1, env=["BOTH=env"], **{"env-file": "app.env"})
    p = patrol.start(patrol.config(apps={"a": app}))
    pid = p.running_pid("a")
    env = wait_for(lambda: (e := environ(pid)).get("FROM_FILE") and e, 10, "the program itself (not its launcher)")
    assert env["FROM_FILE"] == "a value" and env["BOTH"] == "env"
    assert env["PATROL_ID"] == "a"  # Patrol's own variables are not the file's to change

    (tmp_path / "app.env").write_text("FROM_FILE=changed\n")  # read again at each start
    old = p.app("a")["pid"]
    p.api(id="a", group="app", toggle=3)
    pid = p.running_pid("a", other_than=old)
    assert wait_for(lambda: environ(pid).get("FROM_FILE"), 10, "the program's environment") == "changed"


def test_a_malformed_line_is_a_start_failure_naming_file_and_line(patrol, tmp_path):
    path = tmp_path / "bad.env"
    path.write_text("GOOD=1\n\nnot an assignment\n")
    p = patrol.start(patrol.config(apps={"a": patrol.app(1, **quiet(**{"env-file": str(path)}))}))
    assert failure(p, "a") == f'env-file {path} line 3: must be KEY=VALUE (no "=" found)'
    assert "Traceback" not in p.log()
    path.write_text("GOOD=1\n")
    p.api(id="a", group="app", toggle=1)
    p.running_pid("a")  # fixed: the next start works


def test_a_missing_env_file_is_a_start_failure(patrol, tmp_path):
    p = patrol.start(patrol.config(apps={"a": patrol.app(1, **quiet(**{"env-file": "missing.env"}))}))
    assert failure(p, "a") == f"env-file {tmp_path}/missing.env: cannot be read: No such file or directory"


def test_with_a_user_the_env_file_is_read_as_that_user(patrol, tmp_path, system_user: SystemUser, public_dir):
    """A symlink the app's user plants where its env file is must not make Patrol (root)
    read a file that user may not read into the app's environment."""
    secret = tmp_path / "root-only.env"
    secret.write_text("STOLEN=root-secret\n")
    secret.chmod(0o600)
    planted = public_dir / "app.env"
    os.symlink(secret, planted)
    app = patrol.app(1, binary="/bin/sleep", args=["300"], user=system_user.name,
                     **quiet(**{"env-file": str(planted)}))
    p = patrol.start(patrol.config(apps={"a": app}))
    assert failure(p, "a") == f"env-file {planted}: cannot be read: Permission denied"
    assert "root-secret" not in p.log()

    planted.unlink()
    planted.write_text("MINE=yes\nBROKEN LINE\n")
    planted.chmod(0o644)
    p.api(id="a", group="app", toggle=1)
    wait_for(lambda: "line 2" in p.app("a").get("last-reason", ""), 10, "the malformed line")
    assert p.app("a")["last-reason"] == f'env-file {planted} line 2: must be KEY=VALUE (no "=" found)'

    planted.write_text("MINE=yes\n")
    p.api(id="a", group="app", toggle=1)
    pid = p.running_pid("a")
    # the launcher execs the program in the same pid once it read the file as the user
    wait_for(lambda: environ(pid).get("MINE") == "yes", 10, "the program's environment")
