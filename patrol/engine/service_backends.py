"""Service backends as the runner uses them: one per action, and a stand-in for a
backend whose constructor raised (every command then fails with that error)."""

from __future__ import annotations

import structlog

from patrol.plugin.loader import Plugins
from patrol.plugin.model import ServiceConfig
from patrol.plugin.service import ServiceBackend

log = structlog.get_logger("patrol.services")


class BrokenBackend:
    """Stands in for a service backend whose constructor raised: every command fails
    with that error, so the service shows it (``last-reason``) and Patrol runs on."""

    def __init__(self, config: ServiceConfig, name: str, plugin: str, exc: Exception) -> None:
        self.service = config
        self.name = name
        self.error = f"backend {name} (plugin {plugin}) failed to start: {type(exc).__name__}: {exc}"

    def command(self, action: str, parameter: str) -> list[str]:
        raise RuntimeError(self.error)


def backend(config: ServiceConfig, name: str, plugins: Plugins) -> ServiceBackend | BrokenBackend:
    """A service backend; one whose constructor raises fails its commands, not Patrol."""
    try:
        return plugins.services.get(name)(config)
    except Exception as exc:  # noqa: BLE001 - a plugin's bug fails this service only
        plugins.failed_in(plugins.services, name)
        plugin = plugins.origin(plugins.services, name)
        log.error("service backend failed to start", service=config.id, management=name, plugin=plugin,
                  error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        return BrokenBackend(config, name, plugin, exc)
