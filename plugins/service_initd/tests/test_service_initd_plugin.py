"""The ``initd`` backend: discovery, the command line it builds, and that it never
names a script outside its directory."""

from __future__ import annotations

import dataclasses

import pytest
from patrol_service_initd import InitD, script_path

from patrol.testing import installed_plugins, item_errors, load_item

PLUGINS = installed_plugins()


def load(**keys):
    return load_item("services", {"name": "Cron", "service": "cron", "management": 2, **keys}, "cron")


def errors(**keys):
    return item_errors("services", {"name": "Cron", "service": "cron", "management": 2, **keys}, "cron")


def test_it_is_discovered_by_name_and_aliases():
    for key in ("initd", 2, "init.d"):
        assert PLUGINS.services.resolve(key) == "initd"
    assert PLUGINS.services.entries["initd"].plugin == "service_initd"


def test_the_command_is_the_script_and_the_parameter(tmp_path):
    assert InitD(load()).command("status", "status") == ["/etc/init.d/cron", "status"]
    config = load(**{"initd-directory": str(tmp_path), "management-stop-parameter": "graceful-stop"})
    assert InitD(config).command("stop", config.parameters["stop"]) == [f"{tmp_path}/cron", "graceful-stop"]


@pytest.mark.parametrize("value,message", [
    ("etc/init.d", 'must be an absolute path (got "etc/init.d")'),
    ("/etc/../init.d", "must be a clean path"),
    (["/etc/init.d"], "must be a string (got array"),
])
def test_bad_initd_directory_is_refused_naming_the_key(value, message):
    (error,) = errors(**{"initd-directory": value})
    assert error.startswith(f"config: services.cron.initd-directory: {message}")


def test_names_that_leave_the_directory_are_refused_by_the_kernel_rules():
    assert errors(service="../../bin/sh")[0].startswith('config: services.cron.service: must not contain "/"')
    assert errors(service="..")[0].startswith('config: services.cron.service: must not be "." or ".."')


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../cron", "/cron"])
def test_the_backend_itself_never_leaves_its_directory(name):
    """Defence in depth: even a config that skipped the kernel's rules cannot escape."""
    assert script_path("/etc/init.d", name) is None
    escaped = dataclasses.replace(load(), service=name)
    assert InitD.validate(escaped) == [("service", f'must name a script inside /etc/init.d (got "{name}")')]
    with pytest.raises(ValueError):
        InitD(escaped).command("start", "start")


def test_a_script_name_with_dots_stays_inside():
    assert script_path("/etc/init.d/", "my.service@1") == "/etc/init.d/my.service@1"
