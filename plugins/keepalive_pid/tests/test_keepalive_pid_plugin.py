"""patrol-keepalive-pid: discovery, and the pid file rules of pid-app."""

import os

import pytest

from patrol_keepalive_pid import PID_MAX, PidApp, PidPatrol, read_pid

from patrol.testing import installed_plugins


def test_plugin_is_installed_with_the_original_numbers():
    plugins = installed_plugins()
    assert plugins.keepalives.resolve(1) == "pid-patrol" and plugins.keepalives.get("pid-patrol") is PidPatrol
    assert plugins.keepalives.resolve(2) == "pid-app" and plugins.keepalives.get("pid-app") is PidApp
    assert PidPatrol.requires_pid_path and PidApp.requires_pid_path
    assert [o.key for o in PidApp.options] == ["pid-grace"]


@pytest.mark.parametrize(
    "content,expected",
    [
        ("\n \t1254\n", 1254),  # the original's fixture unittest/app.pid
        ("abcd", None),  # unittest/bad.pid
        ("4194304\n", 4194304),  # pid_max on 64-bit Linux: the original rejected > 65535
        (str(PID_MAX), PID_MAX),
        (str(PID_MAX + 1), None),
        ("0", None),
        ("-5", None),
        ("12 34", None),
        ("", None),
    ],
)
def test_read_pid(tmp_path, content, expected):
    path = tmp_path / "app.pid"
    path.write_text(content)
    assert read_pid(str(path)) == expected


def test_read_pid_missing_or_unreadable(tmp_path):
    assert read_pid(str(tmp_path / "missing.pid")) is None
    assert read_pid(str(tmp_path)) is None  # a directory
    if os.geteuid() != 0:  # root reads anything
        path = tmp_path / "locked.pid"
        path.write_text("123")
        path.chmod(0)
        assert read_pid(str(path)) is None
