"""The ``http`` keepalive (3): discovery and what it asks of the kernel.

Its behaviour against a live Patrol (adoption, expiry, run-once, a shell-script app
using ``patrol ping``) is tested in ``tests/api/test_api_keepalives.py``, side by side with
the ``udp`` keepalive.
"""

from __future__ import annotations

from patrol_keepalive_http import HttpKeepAlive

from patrol import PingKeepAlive
from patrol.testing import installed_plugins, load_document

PLUGINS = installed_plugins()


def test_it_is_discovered_by_name_and_by_the_original_number():
    assert PLUGINS.keepalives.resolve("http") == PLUGINS.keepalives.resolve(3) == "http"
    assert PLUGINS.keepalives.get("http") is HttpKeepAlive
    assert issubclass(HttpKeepAlive, PingKeepAlive) and HttpKeepAlive.ping_transport == "http"


def test_the_http_transport_it_pings_is_the_kernels():
    assert dict(PLUGINS.transports)["http"].name == HttpKeepAlive.ping_transport


def test_an_app_needs_no_pid_path_and_is_advertised_the_http_listener():
    app = {"keepalive": 3, "name": "Web", "binary": "web", "working-directory": "/srv", "log-directory": "logs"}
    config = load_document({"apps": {"web": app}, "http": {"listen": "127.0.0.1:9000"}})
    assert config.apps["web"].keepalive == "http" and config.apps["web"].pid_path == ""
    assert config.listen_http == ("127.0.0.1:9000",)
