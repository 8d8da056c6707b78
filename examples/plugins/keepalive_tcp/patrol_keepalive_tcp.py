"""A third-party keepalive: the app is alive while its TCP port accepts connections."""

import socket

from patrol import KeepAlive, Option, Register, hookimpl


class TcpKeepAlive(KeepAlive):
    name = "tcp"
    options = (Option("tcp-port", int, 0, "port the app listens on (127.0.0.1)"),)

    def spawned(self, pid: int) -> None:
        self.check()

    def check(self) -> None:
        try:
            socket.create_connection(("127.0.0.1", self.app.config.options["tcp-port"]), 0.2).close()
            self.app.alive(self.app.pid or self.app.launcher_pid)
        except OSError:
            if self.app.running:
                self.app.dead("port closed")
            elif self.app.launcher_pid:  # still starting: look again shortly
                self.app.call_later(0.1, self.check)


@hookimpl
def patrol_register_keepalives(register: Register[KeepAlive]) -> None:
    register(TcpKeepAlive)
