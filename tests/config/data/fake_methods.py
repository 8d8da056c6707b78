"""Fake keepalive and service methods for the config tests (no real plugin needed).

Loaded by the config tests with ``load_fakes()``; they carry the original numeric
aliases and the flags the loader reads, nothing else.
"""

from __future__ import annotations

from patrol.config import Methods, Option
from patrol.plugin.keepalive import KeepAlive
from patrol.plugin.registry import Registry
from patrol.plugin.service import ServiceBackend


class PidPatrol(KeepAlive):
    name = "pid-patrol"
    aliases = (1,)
    requires_pid_path = True


class PidApp(KeepAlive):
    name = "pid-app"
    aliases = (2,)
    requires_pid_path = True
    options = (Option("pid-grace", (int, float), 10.0, "seconds to wait for the pid file"),)


class Http(KeepAlive):
    name = "http"
    aliases = (3,)
    ping_transport = "http"
    options = (
        Option("ping-grace", float, 2.0, "seconds before the first ping is due",
               check=lambda v: None if v <= 60 else "must be at most 60"),
    )

    @classmethod
    def validate(cls, app):
        if app.options["ping-grace"] > app.stop_timeout:
            return [("ping-grace", "must not exceed stop-timeout")]
        return []


class Udp(KeepAlive):
    name = "udp"
    aliases = (4,)
    ping_transport = "udp"


class Service(ServiceBackend):
    name = "service"
    aliases = (1,)

    def command(self, action, parameter):
        return ["service", self.service.service, parameter]


class Initd(ServiceBackend):
    name = "initd"
    aliases = (2, "init.d")
    options = (
        Option("initd-directory", str, "/etc/init.d", "where the scripts are",
               check=lambda v: None if v.startswith("/") else "must be an absolute path"),
    )

    def command(self, action, parameter):
        return [self.service.options["initd-directory"] + "/" + self.service.service, parameter]


def methods(*, keepalives=(PidPatrol, PidApp, Http, Udp), services=(Service, Initd)) -> Methods:
    keepalive_registry = Registry("keepalive")
    for cls in keepalives:
        keepalive_registry.add(cls, "test-plugin")
    service_registry = Registry("management")
    for cls in services:
        service_registry.add(cls, "test-plugin")
    return Methods(keepalives=keepalive_registry, services=service_registry)
