"""The GUI's code (pages, Jinja2, templates), the log browser and the OpenAPI document load on first use.

A Patrol whose HTTP port serves only the API and ``/status/`` never imports them: they
are megabytes of memory at every Patrol's start. When one of them cannot be loaded, the
requests it would serve are answered 500 naming it, the rest of the server works, and
a later request tries again. Run in a fresh interpreter, since the
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
LAZY = ("jinja2", "patrol.web.gui", "patrol.api.openapi", "patrol.web.logs_api", "patrol.engine.logread")

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
        await get("logs", "/api/logs?id=nosuch")
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
    assert seen["openapi"][0] == 200 and '"openapi": "3.1.0"' in seen["openapi"][2]
    assert "patrol.api.openapi" in seen["openapi"][1] and "patrol.web.logs_api" not in seen["openapi"][1]
    assert "patrol.web.logs_api" in seen["logs"][1] and "patrol.web.gui" not in seen["logs"][1]
    assert seen["logs"][0] == 404 and "there is no app with the id" in seen["logs"][2]  # the real reader answered
    assert seen["dashboard"][0] == 200 and len(seen["dashboard"][1]) == 5  # every one of LAZY
    assert "<html" in seen["dashboard"][2].lower()
    assert seen["login/"][0] == 307  # the router's trailing-slash redirect still finds the GUI's /login
    assert seen["missing"][0] == 404


BROKEN = r"""
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
BROKEN = ("patrol.web.logs_api", "patrol.web.gui")
for name in BROKEN:
    sys.modules[name] = None  # as a module missing from the installation: its import raises ImportError

async def main():
    seen = {}
    transport = httpx.ASGITransport(app=build_app(daemon.view), client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8421") as client:
        async def get(name, path):
            response = await client.get(path)
            seen[name] = [response.status_code, response.headers.get("content-type"), response.text]
        await get("logs", "/api/logs?id=nosuch")
        await get("dashboard", "/")
        await get("missing", "/no/such/page")
        await get("status", "/status/")
        await get("api", "/api/?group=app&id=a")
        for name in BROKEN:
            del sys.modules[name]  # repaired: the next request loads them
        await get("logs again", "/api/logs?id=nosuch")
        await get("dashboard again", "/")
    print("SEEN", json.dumps(seen))

asyncio.run(main())
"""


def test_routes_that_cannot_be_loaded_answer_500_naming_them_and_the_next_request_tries_again():
    done = subprocess.run([sys.executable, "-c", BROKEN], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    logged = done.stdout + done.stderr  # structlog writes to stdout here (no logsetup)
    seen = json.loads(next(line[5:] for line in done.stdout.splitlines() if line.startswith("SEEN ")))
    json_type = "application/json; charset=utf-8"
    assert seen["logs"][:2] == [500, json_type]
    assert json.loads(seen["logs"][2]) == {
        "errors": ["Internal Error: the log browser could not be loaded: see Patrol's log"]}
    assert seen["dashboard"][:2] == [500, json_type] and "the GUI could not be loaded" in seen["dashboard"][2]
    assert seen["missing"][0] == 500 and "the GUI could not be loaded" in seen["missing"][2]
    assert "ModuleNotFoundError" not in seen["logs"][2] + seen["dashboard"][2]  # the cause is for the log only
    assert "routes could not be loaded" in logged and "import of patrol.web.logs_api" in logged
    assert seen["status"][0] == 200 and seen["api"][0] == 200  # the rest of the server is untouched
    assert seen["logs again"][0] == 404 and "there is no app with the id" in seen["logs again"][2]
    assert seen["dashboard again"][0] == 200 and "<html" in seen["dashboard again"][2].lower()
