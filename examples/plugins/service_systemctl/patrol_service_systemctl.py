"""A third-party service backend: systemd units, through ``systemctl``.

    "services": {"web": {"name": "Web", "service": "nginx", "management": "systemctl"}}

starts the unit with ``systemctl start nginx``, looks at it with ``systemctl is-active
--quiet nginx`` (exit 0 only while it runs), and so on. Options (per service):
``systemctl``, the program to run (default ``systemctl``, found on ``PATH``), and
``systemctl-user``, to manage the user's units (``systemctl --user``).

Written against ``from patrol import ...`` alone, as any plugin should be.
"""

from __future__ import annotations

from patrol import Option, Register, ServiceBackend, hookimpl, path_problem


def _program_problem(value: str) -> str | None:
    if not value:
        return "must name the systemctl program"
    return path_problem(value) if "/" in value else None


class Systemctl(ServiceBackend):
    name = "systemctl"
    options = (
        Option("systemctl", str, "systemctl", "the systemctl program (a path, or a name on PATH)", _program_problem),
        Option("systemctl-user", bool, False, "manage the user's units (systemctl --user)"),
    )

    def command(self, action: str, parameter: str) -> list[str]:
        argv = [self.service.options.get("systemctl", "systemctl")]
        if self.service.options.get("systemctl-user"):
            argv.append("--user")
        if parameter == "status":  # systemctl status also exits 0 for some units that do not run
            return [*argv, "is-active", "--quiet", self.service.service]
        return [*argv, parameter, self.service.service]


@hookimpl
def patrol_register_services(register: Register[ServiceBackend]) -> None:
    register(Systemctl)
