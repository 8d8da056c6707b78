"""Patrol keepalive ``notify``: the sd_notify protocol, for daemons written for systemd's
``Type=notify`` (they run under Patrol unchanged).

Each run of the app gets its own ``NOTIFY_SOCKET``: an abstract unix datagram socket
with a random name, bound just before the spawn and closed when the run ends. Like
``pid-patrol``, the spawned process is the app (its exit ends the run); unlike it, the
app is ``ready`` only once it sends ``READY=1``. Understood:

``READY=1``             ready (again, after ``RELOADING=1``)
``RELOADING=1``         not ready until the next ``READY=1`` (not restarted)
``STOPPING=1``          not ready; the app is on its way out
``STATUS=text``         the app's status line (``status-text`` in the API, the GUI, ``patrol status``)
``WATCHDOG=1``          a watchdog ping; with ``watchdog-timeout`` set (``WATCHDOG_USEC`` is
                        exported), a run whose pings stop for that long is restarted
``WATCHDOG=trigger``    restart now, as a missed watchdog
``WATCHDOG_USEC=n``     a new watchdog timeout
``MAINPID=n``           the process to watch becomes ``n``: only from the main process, and
                        only a process of the app's own tree
``BARRIER=1``           every descriptor a message carries is closed once it is handled, so
                        ``systemd-notify --ready`` returns at once

Who may speak: the kernel attaches each sender's credentials (``SO_PASSCRED``), which a
process cannot fake; a message counts only when its sender is the app's process, a
descendant of it, or in the session Patrol created for the app. Anyone else's (abstract
sockets have no permissions) is dropped. Unknown keys are ignored. The watchdog is armed
by ``READY=1`` or the first ``WATCHDOG=1``, as systemd arms it once a service started.

After Patrol restarts, an adopted app still holds the old socket's name: it counts as
ready, and its watchdog is not enforced until its next start.
"""

from __future__ import annotations

import array
import asyncio
import os
import secrets
import socket
import struct
from typing import Any, Mapping

from patrol import AppControl, Cancellable, KeepAlive, Option, Register, hookimpl, is_protected, read_process

#: a datagram holds at most this much (systemd reads as much)
MAX_DATAGRAM = 4096
#: descriptors one message may carry (Linux's SCM_MAX_FD); more are closed by the kernel
MAX_FDS = 253
#: datagrams handled per wake-up: a flood cannot hold the loop
PER_WAKEUP = 32
#: how far up the process tree a sender is looked for
MAX_DEPTH = 64
WATCHDOG_MAX = 86400.0


def _watchdog_problem(value: Any) -> str | None:
    return None if 0 <= value <= WATCHDOG_MAX else f"must be 0..{WATCHDOG_MAX:g} seconds (got {value})"


def parse(payload: bytes) -> dict[str, str]:
    """``KEY=VALUE`` lines; a key given twice keeps its last value, lines without ``=`` are ignored."""
    fields = {}
    for line in payload.decode(errors="replace").split("\n"):
        key, equals, value = line.partition("=")
        if equals and key:
            fields[key] = value
    return fields


class NotifyKeepAlive(KeepAlive):
    """The app speaks sd_notify on its own ``NOTIFY_SOCKET`` (see the module docstring)."""

    name = "notify"
    reports_readiness = True
    options = (Option("watchdog-timeout", (int, float), 0,
                      "seconds without WATCHDOG=1 before the run is restarted (0: no watchdog)", _watchdog_problem),)

    def __init__(self, app: AppControl) -> None:
        super().__init__(app)
        self.sock: socket.socket | None = None
        self.session = 0  # the session Patrol created for the run (its launcher's pid)
        self.watchdog = 0.0  # seconds; 0 = off
        self.watchdog_timer: Cancellable | None = None
        self.dropped = 0

    # -- the socket ------------------------------------------------------------------

    def environment(self) -> Mapping[str, str]:
        self._close()
        name = f"patrol-notify-{secrets.token_hex(12)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.bind("\0" + name)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        self.watchdog = float(self.app.config.options["watchdog-timeout"])
        env = {"NOTIFY_SOCKET": "@" + name}
        if self.watchdog:
            env["WATCHDOG_USEC"] = str(int(self.watchdog * 1_000_000))
        return env

    def _close(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _readable(self) -> None:
        for _ in range(PER_WAKEUP):
            if self.sock is None:
                return
            try:
                data, ancdata, _, _ = self.sock.recvmsg(
                    MAX_DATAGRAM, socket.CMSG_SPACE(struct.calcsize("iII")) + socket.CMSG_SPACE(4 * MAX_FDS))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.app.log.warning("notify socket failed", error=str(exc))
                return
            sender = 0
            fds: list[int] = []
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(value) >= 12:
                    sender = struct.unpack("iII", value[:12])[0]
                elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += array.array("i", value[: len(value) - len(value) % 4]).tolist()
            try:
                if self._accepted(sender):
                    self._handle(sender, parse(data))
                else:
                    self._refused(sender)
            finally:
                for fd in fds:  # BARRIER=1's pipe: closing it tells the sender all came through
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    # -- who may speak ---------------------------------------------------------------

    def _accepted(self, pid: int) -> bool:
        """Is ``pid`` the app's process, a descendant of it, or in the app's session?"""
        if pid <= 0 or not (self.app.running or self.app.launcher_pid):
            return False
        mains = {p for p in (self.app.pid, self.app.launcher_pid) if p}
        info = read_process(pid)
        if info is None:
            return False
        if self.session and info.sid == self.session:
            return True
        for _ in range(MAX_DEPTH):
            if info.pid in mains:
                return True
            if info.ppid <= 1:
                return False
            parent = read_process(info.ppid)
            if parent is None:
                return False
            info = parent
        return False

    def _refused(self, pid: int) -> None:
        self.dropped += 1
        if self.dropped <= 3:  # a flood must not flood Patrol's log
            self.app.log.warning("notify message from outside the app's process tree dropped", sender=pid)

    # -- what the app says -----------------------------------------------------------

    def _handle(self, sender: int, fields: dict[str, str]) -> None:
        app = self.app
        if "MAINPID" in fields:
            self._main_pid(sender, fields["MAINPID"])
        if "STATUS" in fields:
            app.status(fields["STATUS"] or None)
        if fields.get("RELOADING") == "1":
            app.ready(False, "reloading (RELOADING=1)")
        if fields.get("STOPPING") == "1":
            app.ready(False, "stopping (STOPPING=1)")
        if fields.get("READY") == "1":
            app.ready(True, "READY=1")
            self._arm()
        usec = fields.get("WATCHDOG_USEC", "")
        if usec.isdigit() and 0 < int(usec) <= WATCHDOG_MAX * 1_000_000:
            self.watchdog = int(usec) / 1_000_000
            self._arm()
        if fields.get("WATCHDOG") == "1":
            self._arm()
        elif fields.get("WATCHDOG") == "trigger":
            app.fail("watchdog: triggered by the app (WATCHDOG=trigger)")

    def _main_pid(self, sender: int, value: str) -> None:
        app = self.app
        if sender not in (app.pid, app.launcher_pid):
            app.log.warning("MAINPID ignored: only the main process may move it", sender=sender, value=value)
            return
        pid = int(value) if value.isdigit() else 0
        info = read_process(pid) if pid else None
        if info is None or not info.alive or is_protected(pid) or not self._accepted(pid) or pid == app.pid:
            if pid != app.pid:
                app.log.warning("MAINPID ignored: not a live process of the app's own tree", mainpid=value)
            return
        app.alive(pid, tentative=True)
        if app.watch_pid(pid, lambda: app.dead("exited")) is None:
            app.dead("exited")

    def _arm(self) -> None:
        if not self.watchdog or not self.app.running:
            return
        if self.watchdog_timer is not None:
            self.watchdog_timer.cancel()
        self.watchdog_timer = self.app.call_later(self.watchdog, self._expired)

    def _expired(self) -> None:
        self.watchdog_timer = None
        self.app.fail(f"watchdog: no WATCHDOG=1 within {self.watchdog:g} s")

    # -- the run ---------------------------------------------------------------------

    def spawned(self, pid: int) -> None:
        self.session = pid  # a new session: the launcher leads it
        self.dropped = 0
        self.app.alive(pid, tentative=True)  # tentative: MAINPID may name the real one

    def adopt(self) -> None:
        super().adopt()
        if self.app.running:  # its socket was the previous Patrol's: nothing will come
            self.app.ready(True, "adopted after a restart of Patrol (its notify socket is gone)")

    def closed(self) -> None:
        self._close()
        self.session = 0
        self.watchdog_timer = None


@hookimpl
def patrol_register_keepalives(register: Register[KeepAlive]) -> None:
    register(NotifyKeepAlive)
