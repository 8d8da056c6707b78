"""Patrol: a process and service supervisor for Linux.

This module is the one surface for plugin authors: everything a keepalive, a service
backend, a probe, a transport or a trigger observer needs is importable from here, e.g.
``from patrol import hookimpl, KeepAlive, Option``. Names are loaded on first use, so
``import patrol`` costs nothing and the client commands (``patrol status``) start
without pluggy or the web stack. What lies behind a name may move between the kernel's
layers; the name here stays (docs/writing-plugins.md, docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from patrol.api.access import is_ping_only, secret_credential, udp_allowed
    from patrol.api.wire import dumps as json_dumps
    from patrol.config.rules import path_problem
    from patrol.engine.ownership import is_protected
    from patrol.engine.procfs import Proc
    from patrol.engine.procfs import command as process_command
    from patrol.engine.procfs import stat as read_process
    from patrol.plugin.events import ALL_EVENTS, Event
    from patrol.plugin.hookspecs import hookimpl
    from patrol.plugin.keepalive import AppControl, Cancellable, ExitStatus, KeepAlive
    from patrol.plugin.model import AppConfig, Option, PatrolConfig, ServiceConfig
    from patrol.plugin.ping import PingKeepAlive
    from patrol.plugin.probe import CommandOutcome, Probe, ProbeResult, ProbeTarget
    from patrol.plugin.registry import Register
    from patrol.plugin.service import ServiceBackend
    from patrol.plugin.transport import Answer, Guesses, PatrolView, Transport
    from patrol.util.net import bind, parse_listen
    from patrol.util.safefile import NotRegularFile, read_small_file
    from patrol.util.strictjson import loads as json_loads

__version__ = "0.2.0"

#: The plugin API this kernel offers, as (major, minor). The major number changes when a
#: hook, a base class or a documented attribute changes incompatibly; the minor number
#: when something is only added (a new hook, a new optional method). A plugin declares
#: the kernel versions it was written for in its ``patrol`` dependency (the loader refuses
#: it when that range does not hold this kernel); a plugin that spans several kernels can
#: test ``patrol.PLUGIN_API >= (1, 1)`` before using an addition.
PLUGIN_API = (2, 1)

#: name -> the module that defines it (imported when the name is first asked for)
_SURFACE: dict[str, str | tuple[str, str]] = {
    "hookimpl": "patrol.plugin.hookspecs",
    "KeepAlive": "patrol.plugin.keepalive",
    "AppControl": "patrol.plugin.keepalive",
    "Cancellable": "patrol.plugin.keepalive",
    "ExitStatus": "patrol.plugin.keepalive",
    "PingKeepAlive": "patrol.plugin.ping",
    "Probe": "patrol.plugin.probe",
    "ProbeResult": "patrol.plugin.probe",
    "ProbeTarget": "patrol.plugin.probe",
    "CommandOutcome": "patrol.plugin.probe",
    "ServiceBackend": "patrol.plugin.service",
    "Transport": "patrol.plugin.transport",
    "Event": "patrol.plugin.events",
    "ALL_EVENTS": "patrol.plugin.events",
    "Option": "patrol.plugin.model",
    "AppConfig": "patrol.plugin.model",
    "ServiceConfig": "patrol.plugin.model",
    "PatrolConfig": "patrol.plugin.model",
    "Register": "patrol.plugin.registry",
    "PatrolView": "patrol.plugin.transport",
    "Answer": "patrol.plugin.transport",
    "Guesses": "patrol.plugin.transport",
    "path_problem": "patrol.config.rules",
    "is_ping_only": "patrol.api.access",
    "secret_credential": "patrol.api.access",
    "udp_allowed": "patrol.api.access",
    "json_dumps": ("patrol.api.wire", "dumps"),
    "json_loads": ("patrol.util.strictjson", "loads"),
    "read_small_file": "patrol.util.safefile",
    "NotRegularFile": "patrol.util.safefile",
    "Proc": "patrol.engine.procfs",
    "read_process": ("patrol.engine.procfs", "stat"),
    "process_command": ("patrol.engine.procfs", "command"),
    "is_protected": "patrol.engine.ownership",
    "parse_listen": "patrol.util.net",
    "bind": "patrol.util.net",
}

__all__ = ["PLUGIN_API", "__version__", *_SURFACE]


def __getattr__(name: str) -> object:
    where = _SURFACE.get(name)
    if where is None:
        raise AttributeError(f"module 'patrol' has no attribute {name!r}")
    module, attribute = where if isinstance(where, tuple) else (where, name)
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SURFACE))
