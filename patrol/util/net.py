"""Listening sockets from the config's listen addresses (``host:port``, ``[v6]:port``, ...).

Patrol binds its sockets itself, so a bind failure is a clear error naming the address,
never a server library's ``sys.exit``; every transport uses the same two functions.
"""

from __future__ import annotations

import socket


def parse_listen(address: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``:port`` or ``host`` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        host, port = address, ""
    host = host.strip("[]") or "0.0.0.0"
    if port and not port.isdigit():
        raise ValueError(f"bad port in listen address {address!r}")
    return host, int(port) if port else default_port


def bind(host: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # an explicit IPPROTO_TCP is inherited by accepted sockets, so asyncio sets TCP_NODELAY on them
    # (with proto 0 it does not, and every keep-alive response waits 40 ms for a delayed ACK)
    sock = socket.socket(family, kind, socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else 0)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock
