"""The GUI's code (pages, Jinja2, templates) and the OpenAPI document load on first use.

A Patrol whose HTTP port serves only the API and ``/status/`` never imports them: they
are megabytes of memory at every Patrol's start. Run in a fresh interpreter, since the
test process has imported everything long ago; the app is the real one, driven over
ASGI.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r'''
import asyncio, json, sys
import httpx
from patrol.config import Methods, parse_config
from patrol.daemon import Daemon
from patrol.plugin.loader import Plugins
from patrol.web.transport import build_app

plugins = Plugins(strict=True)
app = {"keepalive": 1, "binary": "b", "working-directory": "/srv", "log-directory": "l", "pid-path": "p"}
config, _ = parse_config({"apps": {"a": {**app, "name": "A"}}}, Methods(plugins.keepalives, plugins.services))
daemon = Daemon(config, plugins)
LAZY = ("jinja2", "patrol.web.gui", "patrol.api.openapi")

async def main():
    seen = {"at start": [m for m in LAZY if m in sys.modules]}
    transport = httpx.ASGITransport(app=build_app(daemon.view), client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8421") as client:
        async def get(name, path):
            response = await client.get(path)
            seen[name] = [response.status_code, [m for m in LAZY if m in sys.modules], response.text[:200]]
        await get("status", "/status/")
        await get("api", "/api/?group=app&id=a")
        await get("openapi", "/openapi.json")
        await get("dashboard", "/")
        await get("login/", "/login/")
        await get("missing", "/no/such/page")
    print(json.dumps(seen))

asyncio.run(main())
'''


def test_the_gui_and_openapi_are_imported_by_their_first_request_and_then_work():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["at start"] == []
    assert seen["status"][:2] == [200, []] and seen["api"][:2] == [200, []]
    assert seen["openapi"][:2] == [200, ["patrol.api.openapi"]] and '"openapi": "3.1.0"' in seen["openapi"][2]
    assert seen["dashboard"][:2] == [200, ["jinja2", "patrol.web.gui", "patrol.api.openapi"]]
    assert "<html" in seen["dashboard"][2].lower()
    assert seen["login/"][0] == 307  # the router's trailing-slash redirect still finds the GUI's /login
    assert seen["missing"][0] == 404
