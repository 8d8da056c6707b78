"""Patrol's configuration: the original JSON format (or the same in TOML), checked once.

``load_config`` returns a frozen :class:`PatrolConfig` and warnings, or raises
:class:`ConfigError` listing every problem of the file. The supervisor never
re-validates what this package returns.

The layer between the plugin contract and the engine: it may import only
:mod:`patrol.plugin` (whose ``model.py`` holds the frozen dataclasses it fills, and whose
registries resolve method names) and :mod:`patrol.util`. Re-exported here for readers:
the entry points and the model.
"""

from patrol.config.load import ConfigError, Methods, load_config, parse_config
from patrol.plugin.model import AppConfig, Backoff, Listen, Option, PatrolConfig, ServiceConfig
from patrol.config.rules import is_app_service_id, is_path_clean

__all__ = [
    "AppConfig", "Backoff", "ConfigError", "Listen", "Methods", "Option", "PatrolConfig",
    "ServiceConfig", "is_app_service_id", "is_path_clean", "load_config", "parse_config",
]
