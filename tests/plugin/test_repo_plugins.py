"""Every plugin distribution of this repository is installed and loads.

Entry points live in the dist-info written at install time: after adding or renaming
one, ``pip install -e plugins/<x>`` must run again. This test turns that silent miss
into a failure that says so.
"""

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from patrol.plugin.loader import Plugins

ROOT = Path(__file__).resolve().parents[2]
PYPROJECTS = sorted([*ROOT.glob("plugins/*/pyproject.toml"), *ROOT.glob("examples/plugins/*/pyproject.toml")])


def test_the_seven_first_party_plugins_exist():
    names = {p.parent.name for p in ROOT.glob("plugins/*/pyproject.toml")}
    assert names == {"keepalive_pid", "keepalive_http", "keepalive_udp", "keepalive_notify", "service_initd",
                     "service_service", "probes"}


@pytest.mark.parametrize("pyproject", PYPROJECTS, ids=lambda p: p.parent.name)
def test_entry_points_installed_and_loaded(pyproject):
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"]["patrol"]
    installed = {ep.name: ep.value for ep in entry_points(group="patrol")}
    plugins = Plugins(strict=True)
    loaded = {p.name for p in plugins.loaded}
    for name, module in declared.items():
        assert installed.get(name) == module, f"entry point {name} missing: pip install -e {pyproject.parent.relative_to(ROOT)}"
        assert name in loaded
    assert plugins.failed == []


@pytest.mark.parametrize("pyproject", PYPROJECTS, ids=lambda p: p.parent.name)
def test_plugin_distribution_layout(pyproject):
    project = tomllib.loads(pyproject.read_text())["project"]
    directory = pyproject.parent
    assert project["name"] == "patrol-" + directory.name.replace("_", "-")
    assert any(dep.startswith("patrol") for dep in project["dependencies"])
    module = "patrol_" + directory.name
    assert (directory / f"{module}.py").exists()
