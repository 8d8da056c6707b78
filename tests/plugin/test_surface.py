"""The one plugin surface: ``from patrol import ...`` is all a plugin needs, it loads
lazily, and what only needs part of it does not pay for the rest.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import patrol
from patrol.plugin.states import APP_STATES, SERVICE_STATES, ItemState

ROOT = Path(__file__).resolve().parents[2]


def imported_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    probe = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_every_name_of_the_surface_resolves_and_is_listed() -> None:
    for name in patrol.__all__:
        assert getattr(patrol, name) is not None, name
    for name in ("hookimpl", "KeepAlive", "PingKeepAlive", "ServiceBackend", "Transport", "Event", "Option",
                 "ExitStatus", "AppControl", "PatrolView", "Register", "AppConfig", "ServiceConfig"):
        assert name in patrol.__all__ and name in dir(patrol), name


def test_importing_patrol_loads_nothing_of_the_kernel() -> None:
    loaded = imported_after("import patrol")
    assert not {m for m in loaded if m.startswith("patrol.")}, loaded
    assert not {"pluggy", "starlette", "uvicorn"} & loaded


def test_the_udp_plugin_does_not_load_the_web_stack() -> None:
    """It answers datagrams: importing it must not cost starlette and uvicorn (~130 ms)."""
    loaded = imported_after("import patrol_keepalive_udp")
    assert not {"starlette", "uvicorn", "jinja2"} & loaded, sorted({"starlette", "uvicorn", "jinja2"} & loaded)
    assert "patrol.web" not in loaded


def test_the_client_commands_do_not_load_pluggy_or_the_web_stack() -> None:
    """``patrol status`` (here against nothing: exit 3) stays a standard-library client."""
    code = ("from patrol.cli import main\n"
            "code = main(['status', '--url', 'http://127.0.0.1:9', '--timeout', '2'])\n"
            "assert code == 3, code\n")
    loaded = imported_after(code)
    heavy = {"pluggy", "starlette", "uvicorn", "jinja2", "structlog", "packaging", "sqlite3"} & loaded
    assert not heavy, sorted(heavy)
    assert not {m for m in loaded if m.startswith(("patrol.engine", "patrol.api", "patrol.web", "patrol.config"))}


def test_the_states_docs_api_md_lists_are_the_enum() -> None:
    """docs/api.md names every state an item can be in, and no other."""
    text = (ROOT / "docs" / "api.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `state` |"))
    documented = set(re.findall(r"`([a-z-]+)`", row.split("|")[2]))
    assert documented == {state.value for state in ItemState}
    assert set(APP_STATES) | set(SERVICE_STATES) == set(ItemState)
