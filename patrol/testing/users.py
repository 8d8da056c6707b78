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
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from patrol.testing import pid_alive, wait_for


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
        # --force: the user's processes are killed first, but one may stay a zombie for seconds
        # (its parent gone, it waits for pid 1, which may reap late); userdel counts zombies too
        made.append(["userdel", "--force", "--remove", name])
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


@pytest.fixture
def python_for_everyone() -> Iterator[None]:
    """Let other users run this Python and import Patrol as installed here.

    A checkout made with ``mktemp -d`` (0700), or a Python under ``/root``, cannot be
    entered by another user, so ``patrol`` run as that user would not even import. For
    the test, the directories on the way to the interpreter and to every import path
    get search permission for others (``o+x``: enter, not list), and the import paths
    themselves read permission too (Python lists them to find modules); restored after.
    """
    changed: dict[str, int] = {}

    def grant(directory: Path, bits: int) -> None:
        mode = directory.stat().st_mode & 0o7777
        if mode & bits != bits:
            changed.setdefault(str(directory), mode)  # the first mode seen is the original
            directory.chmod(mode | bits)

    for path in {os.path.realpath(sys.executable), sys.prefix, sys.base_prefix, *filter(None, sys.path)}:
        real = Path(os.path.realpath(path))
        if not real.exists():
            continue
        start = real if real.is_dir() else real.parent
        if str(real) in sys.path or path in sys.path:
            grant(start, 0o005)
        for directory in [start, *start.parents]:
            grant(directory, 0o001)
    try:
        yield
    finally:
        for key, mode in changed.items():
            os.chmod(key, mode)


def processes_of(uid: int) -> list[int]:
    """Pids of the live processes of ``uid``. Zombies are not counted: they run nothing and
    only their parent can remove them. One whose parent died is pid 1's, and a pid 1
    that reaps late (this machine's does, after up to 7 s) kept every teardown that met
    one waiting for the 5 s bound below (5-6 s a test of test_run_as in the suite)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid and pid_alive(int(entry)):
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
