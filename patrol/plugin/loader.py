"""Plugin loading: the one facade over pluggy's PluginManager.

Only this module calls ``pm.hook``. It loads each entry point of the ``patrol`` group in
its own ``try`` so that one broken plugin never stops Patrol from starting (or
``patrol --help`` from working): the plugin is unregistered, whatever it registered is
removed, and it is listed as failed by ``patrol plugins``. A plugin whose distribution
declares a kernel range that does not hold this kernel is not even imported
(:mod:`patrol.plugin.versions`). Set ``PATROL_STRICT_PLUGINS=1`` (CI does) to turn any load
failure into an error instead.

Environment:

``PATROL_STRICT_PLUGINS``   any non-empty value except ``0``: load failures raise.
``PATROL_DISABLE_PLUGINS``  comma-separated entry-point names not to load.
"""

from __future__ import annotations

import importlib
import os
import traceback
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Iterable, Mapping

import pluggy
import structlog

from patrol.plugin import hookspecs
from patrol.plugin.keepalive import KeepAlive
from patrol.plugin.probe import Probe
from patrol.plugin.registry import Register, Registry
from patrol.plugin.service import ServiceBackend
from patrol.plugin.transport import Transport
from patrol.plugin.versions import ENTRY_POINT_GROUP, IncompatiblePlugin, kernel_misfit

log = structlog.get_logger("patrol.plugins")

#: Kernel plugins registered before entry points, through the same hooks: the name
#: ``patrol plugins`` lists (and ``PATROL_DISABLE_PLUGINS`` takes) -> its module. Imported
#: by name, like an entry point, so this layer does not depend on the one it names.
DEFAULT_PLUGINS = {"patrol.http": "patrol.web.http_plugin"}
#: registration hook -> attribute holding its registry
REGISTRATION_HOOKS = {
    "patrol_register_keepalives": "keepalives",
    "patrol_register_services": "services",
    "patrol_register_transports": "transports",
    "patrol_register_probes": "probes",
}


class PluginLoadError(Exception):
    """A plugin failed to load while strict loading was asked for."""


@dataclass
class PluginInfo:
    """A loaded plugin, as ``patrol plugins`` shows it."""

    name: str
    dist: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    registers: list[str] = field(default_factory=list)


@dataclass
class FailedPlugin:
    name: str
    dist: str
    version: str
    error: str


def strict_from_env() -> bool:
    value = os.environ.get("PATROL_STRICT_PLUGINS", "")
    return value not in ("", "0")


class Plugins:
    """Loaded plugins and what they registered.

    :param entry_points: load installed plugins (tests of the kernel pass False).
    :param strict: raise :class:`PluginLoadError` on a failure; default from the env.
    :param plugins: extra plugin objects (modules, instances) to register first, as a
        program embedding Patrol would.
    """

    def __init__(
        self,
        *,
        entry_points: bool = True,
        strict: bool | None = None,
        plugins: Iterable[object] = (),
        defaults: Mapping[str, str] = DEFAULT_PLUGINS,
    ) -> None:
        self.strict = strict_from_env() if strict is None else strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.keepalives: Registry[KeepAlive] = Registry("keepalive")
        self.services: Registry[ServiceBackend] = Registry("management")
        self.transports: Registry[Transport] = Registry("transport")
        self.probes: Registry[Probe] = Registry("probe")
        self.loaded: list[PluginInfo] = []
        self.failed: list[FailedPlugin] = []
        #: plugin -> how often it failed (to load, or in a call the kernel isolated)
        self.failures: dict[str, int] = {}
        blocked = {n.strip() for n in os.environ.get("PATROL_DISABLE_PLUGINS", "").split(",") if n.strip()}
        for name in blocked:
            self.pm.set_blocked(name)
        for name, module in defaults.items():
            if name not in blocked:
                self._load(name, lambda m=module: importlib.import_module(m))
        for plugin in plugins:
            self.register(plugin)
        if entry_points:
            for ep in _entry_points():
                if ep.name in blocked:
                    continue
                dist = ep.dist.name if ep.dist else ""
                version = ep.dist.version if ep.dist else ""
                misfit = kernel_misfit(ep.dist)
                if misfit:  # refused from its metadata: none of its code runs
                    self._fail(ep.name, dist, version, IncompatiblePlugin(misfit))
                    continue
                self._load(ep.name, ep.load, dist=dist, version=version)

    # -- loading ---------------------------------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object programmatically (a module or any object with hookimpls)."""
        name = name or getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{id(plugin):x}"
        self._load(name, lambda: plugin)
        return name

    def _load(self, name: str, load: Any, *, dist: str = "", version: str = "") -> None:
        try:
            plugin = load()
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - any plugin failure is isolated
            self._fail(name, dist, version, exc)
            return
        try:
            registers = self._collect(name)
            self.pm.check_pending()
        except Exception as exc:  # noqa: BLE001
            self._forget(name)
            self._fail(name, dist, version, exc)
            return
        hooks = sorted(h.name for h in (self.pm.get_hookcallers(self.pm.get_plugin(name)) or []))
        self.loaded.append(PluginInfo(name, dist, version, hooks, registers))

    def _collect(self, name: str) -> list[str]:
        """Run ``name``'s registration hooks, attributing every class to it."""
        registered: list[str] = []
        for hook_name, attr in REGISTRATION_HOOKS.items():
            registry: Registry[Any] = getattr(self, attr)
            before = set(registry.names())
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name == name:
                    impl.function(*[Register(registry, name) for _ in impl.argnames])
            registered += [f"{registry.kind} {n}" for n in registry.names() if n not in before]
        return registered

    def _forget(self, name: str) -> None:
        for attr in REGISTRATION_HOOKS.values():
            getattr(self, attr).remove_plugin(name)
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)

    def _fail(self, name: str, dist: str, version: str, exc: BaseException) -> None:
        self.note_failure(name)
        if isinstance(exc, IncompatiblePlugin):
            error = f"incompatible: {exc}"
        else:
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        if self.strict:
            raise PluginLoadError(f"plugin {name!r} failed to load: {error}") from exc
        log.error("plugin failed to load", plugin=name, dist=dist, error=error)
        self.failed.append(FailedPlugin(name, dist, version, error))

    # -- calling ---------------------------------------------------------------------

    def trigger(self, patrol: object, event: object) -> None:
        """Deliver an event to every ``patrol_trigger`` implementation, isolating each.

        pluggy stops a hook call at the first exception, so the kernel calls the
        implementations one by one, in pluggy's own order.
        """
        for impl in reversed(self.pm.hook.patrol_trigger.get_hookimpls()):
            kwargs = {"patrol": patrol, "event": event}
            try:
                impl.function(*[kwargs[a] for a in impl.argnames])
            except Exception as exc:  # noqa: BLE001 - one observer must not stop the others
                self.note_failure(impl.plugin_name)
                log.error(
                    "trigger observer failed",
                    plugin=self.describe_plugin(impl.plugin_name),
                    trigger=getattr(event, "name", "?"),
                    error=repr(exc),
                    exc_info=exc,
                )

    def note_failure(self, plugin: str) -> None:
        """Count a failure of ``plugin`` (``patrol_plugin_failures_total``)."""
        self.failures[plugin] = self.failures.get(plugin, 0) + 1

    def failed_in(self, registry: Registry[Any], name: str) -> None:
        """Count a failure of the plugin that provides ``name`` in ``registry``."""
        entry = registry.entries.get(name)
        self.note_failure(entry.plugin if entry is not None else "unknown")

    def origin(self, registry: Registry[Any], name: str) -> str:
        """Who provides ``name`` in ``registry``, for log lines and reasons: the entry
        point (or registered object) and its distribution and version."""
        entry = registry.entries.get(name)
        if entry is None:
            return "an unknown plugin"
        return self.describe_plugin(entry.plugin)

    def describe_plugin(self, plugin: str) -> str:
        info = next((p for p in self.loaded if p.name == plugin), None)
        if info is not None and info.dist:
            return f"{plugin} ({info.dist} {info.version})"
        return plugin

    def has_observers(self) -> bool:
        return bool(self.pm.hook.patrol_trigger.get_hookimpls())

    def describe(self) -> dict[str, Any]:
        """What ``patrol plugins`` prints."""
        return {
            "loaded": [vars(p) for p in self.loaded],
            "failed": [vars(f) for f in self.failed],
        }


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
