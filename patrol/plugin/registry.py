"""Registries: where plugins' classes are kept by name, and looked up by name or alias.

The kernel never branches on a method's name; it asks a registry. A registry also knows
which distribution provides the methods of the original Patrol, so that a config naming
``"keepalive": 4`` without ``patrol-keepalive-udp`` installed fails with the package to
install instead of "unknown method".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")

#: Where the first-party methods live, so a missing one can be named precisely.
#: kind -> {name or numeric alias: (canonical name, distribution)}
KNOWN_PROVIDERS: dict[str, dict[str | int, tuple[str, str]]] = {
    "keepalive": {
        1: ("pid-patrol", "patrol-keepalive-pid"),
        "pid-patrol": ("pid-patrol", "patrol-keepalive-pid"),
        2: ("pid-app", "patrol-keepalive-pid"),
        "pid-app": ("pid-app", "patrol-keepalive-pid"),
        3: ("http", "patrol-keepalive-http"),
        "http": ("http", "patrol-keepalive-http"),
        4: ("udp", "patrol-keepalive-udp"),
        "udp": ("udp", "patrol-keepalive-udp"),
    },
    "management": {
        1: ("service", "patrol-service-service"),
        "service": ("service", "patrol-service-service"),
        2: ("initd", "patrol-service-initd"),
        "initd": ("initd", "patrol-service-initd"),
        "init.d": ("initd", "patrol-service-initd"),
    },
    "transport": {
        "udp": ("udp", "patrol-keepalive-udp"),
    },
    "probe": {
        "tcp": ("tcp", "patrol-probes"),
        "http": ("http", "patrol-probes"),
        "exec": ("exec", "patrol-probes"),
        "log": ("log", "patrol-probes"),
    },
}


class RegistrationError(Exception):
    """A plugin registered a class badly (no name, or a name/alias already taken)."""


@dataclass
class Entry(Generic[T]):
    cls: type[T]
    plugin: str


@dataclass(frozen=True)
class Conflict:
    """Two plugins registered the same name or alias: which one a config meant is unknown."""

    key: str | int
    first: str  # the plugin that registered it first (it stays loaded)
    second: str  # the plugin refused for it (listed as failed)


@dataclass
class Registry(Generic[T]):
    """Classes of one kind (keepalives, service backends, transports), keyed by name.

    A name or alias registered twice is refused and remembered as a :class:`Conflict`:
    the second plugin fails to load, and the contested key resolves to nothing, so a
    config naming it is an error that names both plugins instead of silently getting
    whichever plugin happened to load first.
    """

    kind: str
    entries: dict[str, Entry[T]] = field(default_factory=dict)
    aliases: dict[str | int, str] = field(default_factory=dict)
    conflicts: dict[str | int, Conflict] = field(default_factory=dict)

    def add(self, cls: type[T], plugin: str) -> None:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise RegistrationError(f"{plugin}: {cls.__qualname__} has no 'name' (a non-empty str)")
        keys: list[str | int] = [name, *getattr(cls, "aliases", ())]
        for key in keys:
            taken = self._owner(key)
            if taken is not None:
                first = self.entries[taken].plugin
                self.conflicts.setdefault(key, Conflict(key, first, plugin))
                raise RegistrationError(
                    f"{self.kind} {key!r} from {plugin} ({cls.__qualname__}) "
                    f"is already registered by {first}: {plugin} is refused, and a config using "
                    f"{key!r} is an error until one of the two is uninstalled or disabled"
                )
        self.entries[name] = Entry(cls, plugin)
        for key in keys[1:]:
            self.aliases[key] = name

    def _owner(self, key: str | int) -> str | None:
        if isinstance(key, str) and key in self.entries:
            return key
        return self.aliases.get(key)

    def remove_plugin(self, plugin: str) -> None:
        """Forget everything ``plugin`` registered (used when a plugin fails half-way)."""
        gone = {n for n, e in self.entries.items() if e.plugin == plugin}
        for name in gone:
            del self.entries[name]
        for alias in [a for a, n in self.aliases.items() if n in gone]:
            del self.aliases[alias]

    def resolve(self, key: str | int) -> str | None:
        """Canonical name for a name or alias; None when nothing (or more than one
        plugin: see :meth:`conflict`) registered it."""
        if key in self.conflicts:
            return None
        return self._owner(key)

    def conflict(self, key: str | int) -> Conflict | None:
        """The two plugins that registered ``key``, if two did."""
        return self.conflicts.get(key)

    def get(self, name: str) -> type[T]:
        return self.entries[name].cls

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __iter__(self) -> Iterator[tuple[str, type[T]]]:
        for name in sorted(self.entries):
            yield name, self.entries[name].cls

    def missing_hint(self, key: str | int) -> str:
        """Explain an unknown name: which package provides it, or what is installed."""
        conflict = self.conflicts.get(key)
        if conflict is not None and conflict.first == conflict.second:
            return (f"{self.kind} {key!r} is registered twice by the plugin {conflict.first}, which was refused "
                    f"for it (patrol plugins lists it)")
        if conflict is not None:
            return (f"{self.kind} {key!r} is registered by two plugins, {conflict.first} and {conflict.second}, "
                    f"so which one is meant is unknown: uninstall one, or disable one with "
                    f"PATROL_DISABLE_PLUGINS={conflict.second} (patrol plugins lists them)")
        known = KNOWN_PROVIDERS.get(self.kind, {}).get(key)
        if known is not None:
            return f"{self.kind} {key!r} needs: pip install {known[1]}"
        installed = ", ".join(self.names()) or "none"
        return f"unknown {self.kind} {key!r} (installed: {installed})"


class Register(Generic[T]):
    """The callable a registration hook receives: ``register(cls)``.

    It remembers which plugin is registering so duplicates name both plugins.
    """

    def __init__(self, registry: Registry[T], plugin: str) -> None:
        self._registry = registry
        self._plugin = plugin

    def __call__(self, cls: type[T]) -> type[T]:
        self._registry.add(cls, self._plugin)
        return cls
