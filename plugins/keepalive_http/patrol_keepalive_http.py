"""Patrol keepalive ``http`` (3): the app stays alive by pinging Patrol's HTTP API.

The app finds the address in ``PATROL_HTTP`` (a JSON list) and its id in ``PATROL_ID``,
and POSTs ``{"id": ID, "group": "app", "ping": true, "pid": PID}`` to ``/api/`` more
often than ``ping-timeout``. Pings over any other transport are refused. The HTTP
transport itself is part of the kernel.
"""

from __future__ import annotations

from patrol import KeepAlive, PingKeepAlive, Register, hookimpl


class HttpKeepAlive(PingKeepAlive):
    name = "http"
    aliases = (3,)
    ping_transport = "http"


@hookimpl
def patrol_register_keepalives(register: Register[KeepAlive]) -> None:
    register(HttpKeepAlive)
