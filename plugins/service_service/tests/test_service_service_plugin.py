"""The ``service`` backend: discovery, the command line it builds, its option's rules."""

from __future__ import annotations

import os

import pytest
from patrol_service_service import Service, find_program

from patrol.testing import installed_plugins, item_errors, load_item

PLUGINS = installed_plugins()


def load(**keys):
    return load_item("services", {"name": "Cron", "service": "cron", "management": 1, **keys}, "cron")


def errors(**keys):
    return item_errors("services", {"name": "Cron", "service": "cron", "management": 1, **keys}, "cron")


def test_it_is_discovered_by_name_and_by_the_original_number():
    assert PLUGINS.services.resolve("service") == PLUGINS.services.resolve(1) == "service"
    assert PLUGINS.services.entries["service"].plugin == "service_service"
    assert any(p.name == "service_service" and "management service" in p.registers for p in PLUGINS.loaded)


def test_the_command_is_service_name_parameter(tmp_path):
    program = tmp_path / "my-service"
    config = load(**{"service-command": str(program), "management-restart-parameter": "force-reload"})
    backend = Service(config)
    assert backend.command("status", config.parameters["status"]) == [str(program), "cron", "status"]
    assert backend.command("restart", config.parameters["restart"]) == [str(program), "cron", "force-reload"]


@pytest.mark.skipif(not os.access("/usr/sbin/service", os.X_OK), reason="no /usr/sbin/service on this system")
def test_the_default_is_found_in_sbin_even_outside_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert find_program("service") == "/usr/sbin/service"
    assert Service(load()).command("start", "start") == ["/usr/sbin/service", "cron", "start"]


def test_a_program_found_nowhere_is_left_for_spawning_to_report(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_program("no-such-program-here") == "no-such-program-here"


@pytest.mark.parametrize("value,message", [
    ("bin/service", 'must be a program name or an absolute path (got "bin/service")'),
    ("/usr/sbin/../sbin/service", "must be a clean path"),
    ("", "must not be empty"),
    (5, "must be a string (got number 5)"),
])
def test_bad_service_command_is_refused_naming_the_key(value, message):
    (error,) = errors(**{"service-command": value})
    assert error.startswith(f"config: services.cron.service-command: {message}")
