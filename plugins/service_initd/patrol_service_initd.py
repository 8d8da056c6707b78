"""Patrol service management ``initd`` (2): runs ``/etc/init.d/NAME ACTION``.

Option ``initd-directory`` (default ``/etc/init.d``) says where the scripts are. The
kernel already refuses service names that could leave a directory (``/``, ``.``,
``..``); the script's path is checked again here, so whatever the kernel's rules become,
a script is never looked up outside that directory.
"""

from __future__ import annotations

import os

from patrol import Option, Register, ServiceBackend, ServiceConfig, hookimpl, path_problem

DEFAULT = "/etc/init.d"


def _directory_problem(value: str) -> str | None:
    if not value.startswith("/"):
        return f'must be an absolute path (got "{value}")'
    return path_problem(value)


def script_path(directory: str, service: str) -> str | None:
    """``directory/service``, or None when that would not be a file directly inside it."""
    script = os.path.normpath(os.path.join(directory, service))
    return script if os.path.dirname(script) == os.path.normpath(directory) else None


class InitD(ServiceBackend):
    name = "initd"
    aliases = (2, "init.d")
    options = (Option("initd-directory", str, DEFAULT, "where the init scripts are", _directory_problem),)

    @classmethod
    def validate(cls, service: ServiceConfig) -> list[tuple[str, str]]:
        directory = service.options.get("initd-directory", DEFAULT)
        if script_path(directory, service.service) is None:
            return [("service", f'must name a script inside {directory} (got "{service.service}")')]
        return []

    def command(self, action: str, parameter: str) -> list[str]:
        directory = self.service.options.get("initd-directory", DEFAULT)
        script = script_path(directory, self.service.service)
        if script is None:  # validate() refuses such a config; never run outside the directory
            raise ValueError(f"service {self.service.service!r} is not a script inside {directory}")
        return [script, parameter]


@hookimpl
def patrol_register_services(register: Register[ServiceBackend]) -> None:
    register(InitD)
