"""Patrol service management ``initd`` (2): runs ``/etc/init.d/NAME ACTION``.

Option ``initd-directory`` (default ``/etc/init.d``) says where the scripts are. The
service name is validated by the kernel (no ``/``, not ``.`` or ``..``), and the path is
checked again here so a script can never be looked up outside that directory.
"""

from __future__ import annotations

import os

from patrol import hookimpl
from patrol.config.model import Option, ServiceConfig
from patrol.service import ServiceBackend


def _absolute(value: str) -> str | None:
    return None if value.startswith("/") else "must be an absolute path"


class InitD(ServiceBackend):
    name = "initd"
    aliases = (2, "init.d")
    options = (Option("initd-directory", str, "/etc/init.d", "where the init scripts are", _absolute),)

    @classmethod
    def validate(cls, service: ServiceConfig) -> list[tuple[str, str]]:
        directory = service.options.get("initd-directory", "/etc/init.d")
        script = os.path.normpath(os.path.join(directory, service.service))
        if os.path.dirname(script) != os.path.normpath(directory):
            return [("service", f"must name a script inside {directory} (got {service.service!r})")]
        return []

    def command(self, action: str, parameter: str) -> list[str]:
        directory = self.service.options.get("initd-directory", "/etc/init.d")
        return [os.path.join(directory, self.service.service), parameter]


@hookimpl
def patrol_register_services(register):  # type: ignore[no-untyped-def]
    register(InitD)
