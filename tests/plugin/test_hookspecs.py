"""Meta-tests: every hookspec is documented and tested (datasette's rule)."""

import inspect
import re
from pathlib import Path

import pytest

from patrol.plugin import hookspecs

ROOT = Path(__file__).resolve().parents[2]
SPECS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("patrol_")]


def test_there_are_five_hooks():
    assert sorted(SPECS) == sorted(
        ["patrol_register_keepalives", "patrol_register_services", "patrol_register_transports",
         "patrol_register_probes", "patrol_trigger"]
    )


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_has_docstring(name):
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    assert len(doc) > 80 and ":param" in doc, f"{name} needs a real docstring"


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_has_a_test(name):
    tests = "\n".join(p.read_text() for p in ROOT.glob("tests/**/test_*.py"))
    assert re.search(rf"def test_hook_{name}(_\w+)?\(", tests), f"add a test named test_hook_{name}..."


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_is_documented_for_plugin_authors(name):
    assert name in (ROOT / "docs" / "writing-plugins.md").read_text()
