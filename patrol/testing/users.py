"""A throwaway user and group for tests of apps that run as another user.

``system_user`` creates a user with a group of its own, a supplementary group and a
home directory (``useradd``/``groupadd``, names with a random suffix so parallel runs
and leftovers never collide), and removes them after the test, even when it failed.
Only root can do that: the fixture skips elsewhere, except on CI (``CI`` set), which
runs as root, where not being root is a setup gone wrong: it fails.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from patrol.testing import wait_for


@dataclass(frozen=True)
class SystemUser:
    name: str
    uid: int
    gid: int  # its own group, of the same name
    extra_group: str  # a supplementary group it is a member of
    extra_gid: int
    home: str


def require_root() -> None:
    """Skip (fail on CI) a test that needs root."""
    if os.geteuid() != 0:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("needs root (CI runs the suite as root)")


@pytest.fixture
def system_user() -> Iterator[SystemUser]:
    require_root()
    suffix = uuid.uuid4().hex[:8]
    name, extra = f"ptest{suffix}", f"ptestx{suffix}"
    made: list[list[str]] = []
    try:
        subprocess.run(["groupadd", extra], check=True, capture_output=True)
        made.append(["groupdel", extra])
        subprocess.run(["useradd", "--create-home", "--user-group", "--groups", extra, "--shell", "/bin/sh", name],
                       check=True, capture_output=True)
        made.append(["userdel", "--remove", name])
        entry = pwd.getpwnam(name)
        yield SystemUser(name, entry.pw_uid, entry.pw_gid, extra, grp.getgrnam(extra).gr_gid, entry.pw_dir)
    finally:
        if made[1:]:
            kill_processes_of(pwd.getpwnam(name).pw_uid)  # userdel refuses a user that still runs something
        for command in reversed(made):  # the user (and its own group) first, then the extra group
            subprocess.run(command, capture_output=True)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own are root's alone): for the
    programs and files of an app that runs as another user."""
    path = Path(tempfile.mkdtemp(prefix="patrol-public-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                found.append(int(entry))
        except OSError:
            continue
    return found


def kill_processes_of(uid: int) -> None:
    """SIGKILL every process of ``uid`` (a throwaway user: all of them are the test's), by
    pid, and wait (bounded) until they are gone."""
    for pid in processes_of(uid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        wait_for(lambda: not processes_of(uid), 5, f"the processes of uid {uid} to end")
    except AssertionError:
        pass  # userdel says why, and the test's own failure (if any) matters more
