"""The service backend interface: how an action on a system service becomes a command.

A backend only builds command lines; the kernel runs them as subprocesses on the event
loop (never blocking supervision), applies the timeouts, kills the whole process group
of a command that hangs, captures its output into Patrol's log, and decides success
from the exit code and the service's ``ignore-exit-codes-ACTION`` list.

A complete third-party backend (systemd)::

    from patrol import ServiceBackend, hookimpl

    class Systemctl(ServiceBackend):
        name = "systemctl"
        def command(self, action, parameter):
            return ["systemctl", parameter, self.service.service]

    @hookimpl
    def patrol_register_services(register):
        register(Systemctl)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from patrol.plugin.model import Option, ServiceConfig


class ServiceBackend(ABC):
    """Base class of service management backends.

    ``name`` is what users write in ``"management"`` / ``"management-ACTION"``;
    ``aliases`` are other accepted values (the original's ``1`` / ``2``); ``options``
    are extra per-service config keys the backend understands, read back from
    ``self.service.options``.
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[int | str, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = ()

    def __init__(self, service: ServiceConfig) -> None:
        self.service = service

    @classmethod
    def validate(cls, service: ServiceConfig) -> list[tuple[str, str]]:
        """Extra checks on a loaded service: ``[(key, message), ...]``."""
        return []

    @abstractmethod
    def command(self, action: str, parameter: str) -> list[str]:
        """The argv to run for ``action`` (start/status/stop/restart).

        ``parameter`` is the word configured for the action (``management-ACTION-parameter``,
        by default the action itself). The command runs without a shell.
        """
