"""Patrol service management ``service`` (1): runs ``service NAME ACTION``.

Option ``service-command`` (default ``service``) names the program: a bare name is looked
up in ``PATH`` and then in ``/usr/sbin`` and ``/sbin``, where Debian and most other
systems keep ``service(8)`` but where an unprivileged user's ``PATH`` often does not
reach; a path is used as it is (for unusual systems, and for tests).
"""

from __future__ import annotations

import os
import shutil

from patrol import Option, Register, ServiceBackend, hookimpl, path_problem

DEFAULT = "service"
SBIN = ("/usr/sbin", "/sbin")


def _program_problem(value: str) -> str | None:
    if not value:
        return "must not be empty"
    if "/" in value and not value.startswith("/"):
        return f'must be a program name or an absolute path (got "{value}")'
    return path_problem(value) if "/" in value else None


def find_program(name: str) -> str:
    """The path to run for ``name``; the name itself when it is nowhere (spawning then says so)."""
    if "/" in name:
        return name
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN])
    return shutil.which(name, path=search) or name


class Service(ServiceBackend):
    name = "service"
    aliases = (1,)
    options = (Option("service-command", str, DEFAULT, "the service(8) program to run", _program_problem),)

    def command(self, action: str, parameter: str) -> list[str]:
        program = find_program(self.service.options.get("service-command", DEFAULT))
        return [program, self.service.service, parameter]


@hookimpl
def patrol_register_services(register: Register[ServiceBackend]) -> None:
    register(Service)
