"""Patrol service management ``service`` (1): runs ``service NAME ACTION``.

Option ``service-command`` (default ``service``, looked up in PATH) names the program,
for systems where it lives elsewhere, and for tests.
"""

from __future__ import annotations

from patrol import hookimpl
from patrol.config.model import Option
from patrol.service import ServiceBackend


class Service(ServiceBackend):
    name = "service"
    aliases = (1,)
    options = (Option("service-command", str, "service", "the service(8) program to run"),)

    def command(self, action: str, parameter: str) -> list[str]:
        return [self.service.options.get("service-command", "service"), self.service.service, parameter]


@hookimpl
def patrol_register_services(register):  # type: ignore[no-untyped-def]
    register(Service)
