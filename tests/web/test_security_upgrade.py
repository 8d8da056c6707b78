"""A WebSocket upgrade is answered as a plain HTTP request, inside Patrol's connection
handling, even when the ``websockets`` package is installed (I1).

uvicorn's default ``ws="auto"`` hands any ``Upgrade: websocket`` request to a WebSocket
protocol as soon as ``websockets`` (or ``wsproto``) can be imported, outside Patrol's
connection deadlines and bookkeeping. Patrol has no WebSocket route, so it says
``ws="none"``. The test puts a real ``websockets`` wheel on Patrol's ``PYTHONPATH`` (a
scratch copy: it is not one of Patrol's dependencies), as the red-team review did.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from patrol.testing import PatrolFactory

UPGRADE = ("GET /status/ HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@pytest.fixture(scope="module")
def websockets_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A directory from which ``import websockets`` works ("" when it is installed already)."""
    if importlib.util.find_spec("websockets") is not None:
        return ""
    wheels = tmp_path_factory.mktemp("wheels")
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                          "-d", str(wheels), "websockets"], capture_output=True, text=True, timeout=120)
    found = sorted(wheels.glob("websockets-*.whl"))
    if got.returncode != 0 or not found:
        pytest.skip(f"no websockets wheel to be had: {got.stderr.strip()[-300:]}")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(found[0]) as wheel:
        wheel.extractall(site)
    return str(site)


def one_answer(address: str, request: bytes) -> http.client.HTTPResponse:
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    try:
        sock.sendall(request)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        answer.read()
        return answer
    finally:
        sock.close()


def test_an_upgrade_request_is_answered_as_http_with_websockets_installed(patrol: PatrolFactory,
                                                                           websockets_path: str) -> None:
    env = {"PYTHONPATH": os.pathsep.join(p for p in (websockets_path, os.environ.get("PYTHONPATH", "")) if p)}
    probe = subprocess.run([sys.executable, "-c", "import websockets, uvicorn.protocols.websockets.auto as a; "
                            "print(a.AutoWebSocketsProtocol is not None)"],
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "True", probe  # uvicorn would switch protocols, but for ws="none"
    p = patrol.start(patrol.config(apps={"a": patrol.app(1, disabled=True)}), env=env)
    plain = one_answer(p.http, f"GET /status/ HTTP/1.1\r\nHost: {p.http}\r\nConnection: close\r\n\r\n".encode())
    upgrade = one_answer(p.http, UPGRADE.format(host=p.http).encode())
    assert plain.status == 200
    assert upgrade.status == 200, (upgrade.status, upgrade.getheaders())  # no 101, and not the 403 of websockets
    assert upgrade.getheader("Date") is None  # Patrol sends none; the websockets library does
