"""The sd_notify keepalive (``notify``, plugins/keepalive_notify) with real daemons under
a real ``patrol run`` (docs/health.md): Debian's ``systemd-notify`` and a Python app
speaking the protocol are ready only after ``READY=1``; ``STATUS=`` reaches the API; a
run whose ``WATCHDOG=1`` pings stop is restarted; a datagram from a process outside the
app's tree is dropped; ``MAINPID=`` from a process other than the main one is ignored."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from patrol.testing import PatrolFactory, pid_alive, wait_for

SHELL_DAEMON = """#!/bin/sh
# a Type=notify daemon written for systemd: waits for {gate}, then says it is ready
while [ ! -e '{gate}' ]; do sleep 0.05; done
systemd-notify --ready --status="serving requests"
echo $? > '{gate}.notified'  # it waits until Patrol closed the BARRIER=1 pipe, then says how it went
exec sleep 300
"""

PY_DAEMON = """#!{python}
# speaks sd_notify itself: writes its socket's name and WATCHDOG_USEC to {info}; each file
# of {steps} that appears sends its text once, even across restarts ("CHILD text": a child of the daemon sends
# it, with $PID its own pid, and writes that pid to {info}.child); pings WATCHDOG=1 while
# {pings} exists
import os, socket, subprocess, sys, time
CHILD = "import os, socket, sys, time; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(" \
        "sys.argv[2].replace('$PID', str(os.getpid())).encode(), chr(0) + sys.argv[1][1:]); time.sleep(300)"
name = os.environ["NOTIFY_SOCKET"]
address = "\\0" + name[1:] if name.startswith("@") else name
with open({info!r} + ".tmp", "w") as f:
    f.write(name + " " + os.environ.get("WATCHDOG_USEC", "-") + " " + str(os.getpid()) + "\\n")
os.rename({info!r} + ".tmp", {info!r})
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
while True:
    for step in sorted(os.listdir({steps!r})):
        if "." not in step:  # each step once, across restarts too: "NNN" becomes "NNN.sent"
            path = os.path.join({steps!r}, step)
            with open(path) as f:
                text = f.read()
            os.rename(path, path + ".sent")
            if text.startswith("CHILD "):
                child = subprocess.Popen([sys.executable, "-c", CHILD, name, text[6:]])
                with open({info!r} + ".child.tmp", "w") as f:
                    f.write(str(child.pid))
                os.rename({info!r} + ".child.tmp", {info!r} + ".child")
            else:
                sock.sendto(text.encode(), address)
    if os.path.exists({pings!r}):
        sock.sendto(b"WATCHDOG=1", address)
    time.sleep(0.05)
"""


def script(path: Path, text: str, **values: Any) -> str:
    path.write_text(text.format(python=sys.executable, **values))
    path.chmod(0o755)
    return str(path)


class PyDaemon:
    """The Python daemon's files: ``say(step, text)`` makes it send ``text`` once."""

    def __init__(self, directory: Path) -> None:
        self.info, self.steps, self.pings = directory / "info", directory / "steps", directory / "pings"
        self.steps.mkdir()
        self.binary = script(directory / "pydaemon", PY_DAEMON, info=str(self.info), steps=str(self.steps),
                             pings=str(self.pings))
        self.count = 0

    def say(self, text: str) -> None:
        self.count += 1
        (self.steps / f"{self.count:03}.tmp").write_text(text)
        (self.steps / f"{self.count:03}.tmp").rename(self.steps / f"{self.count:03}")

    def socket_name(self) -> tuple[str, str, int]:
        name, usec, pid = wait_for(lambda: self.info.exists() and self.info.read_text().split(), 15, "the daemon up")
        return name, usec, int(pid)


def test_systemd_notify_makes_a_daemon_ready_and_its_status_reaches_the_api(patrol: PatrolFactory,
                                                                           tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    binary = script(tmp_path / "daemon", SHELL_DAEMON, gate=str(gate))
    p = patrol.start(patrol.config(apps={"daemon": patrol.app("notify", binary=binary)}))
    p.running_pid("daemon")
    entry = p.app("daemon")
    assert entry["state"] == "running" and entry["ready"] is False  # the process exists: not yet ready
    gate.touch()
    entry = wait_for(lambda: (e := p.app("daemon")).get("ready") and e, 15, "the daemon ready")
    assert entry["state"] == "ready"
    notified = tmp_path / "gate.notified"
    assert wait_for(lambda: notified.exists() and notified.read_text().strip(), 15, "systemd-notify returned") == "0"
    status, body = p.api(id="daemon", group="app")
    assert status == 200 and body["ready"] is True and body["status-text"] == "serving requests"


def test_a_python_daemon_is_ready_only_after_it_says_so_and_a_stranger_is_not_heard(patrol: PatrolFactory,
                                                                                   tmp_path: Path) -> None:
    daemon = PyDaemon(tmp_path)
    p = patrol.start(patrol.config(apps={"daemon": patrol.app("notify", binary=daemon.binary)}))
    name, usec, _ = daemon.socket_name()
    assert name.startswith("@patrol-notify-") and usec == "-"  # no watchdog-timeout: no WATCHDOG_USEC
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stranger:  # this test: outside the app's tree
        stranger.sendto(b"READY=1\nSTATUS=taken over", "\0" + name[1:])
    daemon.say("STATUS=starting")  # datagrams are read in order: the stranger's came first
    wait_for(lambda: p.app("daemon").get("status-text") == "starting", 15, "the daemon's own status")
    assert p.app("daemon")["ready"] is False and p.app("daemon")["state"] == "running"
    daemon.say("READY=1\nSTATUS=serving")
    entry = wait_for(lambda: (e := p.app("daemon")).get("ready") and e, 15, "the daemon ready")
    assert entry["status-text"] == "serving" and entry["state"] == "ready"
    daemon.say("RELOADING=1")
    wait_for(lambda: p.app("daemon")["state"] == "unready", 15, "unready while reloading")
    assert not p.app("daemon").get("history")  # reloading is no failure
    daemon.say("READY=1")
    wait_for(lambda: p.app("daemon")["state"] == "ready", 15, "ready again")
    daemon.say("STOPPING=1")
    wait_for(lambda: p.app("daemon")["state"] == "unready", 15, "unready while stopping")
    assert not p.app("daemon").get("history")


def test_a_daemon_whose_watchdog_pings_stop_is_restarted(patrol: PatrolFactory, tmp_path: Path) -> None:
    daemon = PyDaemon(tmp_path)
    daemon.pings.touch()
    app = patrol.app("notify", binary=daemon.binary, **{"watchdog-timeout": 1})
    p = patrol.start(patrol.config(apps={"daemon": app}))
    _, usec, first = daemon.socket_name()
    assert usec == "1000000"
    daemon.say("READY=1")
    wait_for(lambda: p.app("daemon").get("ready"), 15, "the daemon ready")
    daemon.info.unlink()
    daemon.pings.unlink()  # the daemon hangs, as far as its watchdog can tell
    _, _, second = daemon.socket_name()
    assert second != first
    record = wait_for(lambda: p.app("daemon").get("history"), 15, "the run closed")[-1]
    assert record["pid"] == first and record["reason"] == "watchdog: no WATCHDOG=1 within 1 s"
    wait_for(lambda: not pid_alive(first), 10, "the hung run stopped")
    daemon.info.unlink()
    daemon.say("WATCHDOG=trigger")  # the daemon knows it is stuck: restart at once
    _, _, third = daemon.socket_name()
    assert third != second
    record = wait_for(lambda: len(h := p.app("daemon").get("history", [])) >= 2 and h, 15, "the run closed")[1]
    assert record["pid"] == second and record["reason"] == "watchdog: triggered by the app (WATCHDOG=trigger)"


def test_mainpid_counts_from_the_main_process_only(patrol: PatrolFactory, tmp_path: Path) -> None:
    daemon = PyDaemon(tmp_path)
    p = patrol.start(patrol.config(apps={"daemon": patrol.app("notify", binary=daemon.binary)}))
    _, _, main = daemon.socket_name()
    child_file = tmp_path / "info.child"
    daemon.say("CHILD MAINPID=$PID\nSTATUS=the child spoke")  # of the app's tree, but not its main process
    child = int(wait_for(lambda: child_file.exists() and child_file.read_text(), 15, "the child"))
    wait_for(lambda: p.app("daemon").get("status-text") == "the child spoke", 15, "the child heard")
    assert p.app("daemon")["pid"] == main  # its STATUS counts, its MAINPID does not
    daemon.say(f"MAINPID={child}\nSTATUS=handed over")  # the main process hands over: that counts
    wait_for(lambda: p.app("daemon").get("pid") == child, 15, "the child watched")
    assert p.app("daemon")["status-text"] == "handed over"
