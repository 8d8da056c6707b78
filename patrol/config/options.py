"""A plugin's own config keys (:class:`patrol.Option`), read the same way wherever they sit.

Keepalives and service backends add keys to the items that use them; probes add keys
to their settings object. Each key is type-checked, defaulted, and checked by the
plugin's own rule, with the same messages everywhere.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Iterable

from patrol.config.reader import Section, frozen_mapping, kind_of
from patrol.plugin.model import Option

_UNSET = object()


def read_options(sec: Section, options: Iterable[Option]) -> MappingProxyType[str, Any]:
    """A plugin's own keys: type-checked, defaulted, and checked by the plugin's rule."""
    values = {}
    for option in options:
        value = sec.get(option.key, kind_of(option.type), _UNSET)
        if value is _UNSET:
            values[option.key] = option.default
            continue
        try:
            problem = option.check(value) if option.check else None
        except Exception as exc:  # a plugin's bug must not become a traceback here
            problem = f"could not be checked by the plugin ({type(exc).__name__}: {exc})"
        if problem:
            sec.report.error(sec.at(option.key), problem)
        values[option.key] = _frozen(value)
    return frozen_mapping(values)


def _frozen(value: Any) -> Any:
    """Arrays become tuples: the model is frozen, and settings are compared on reload."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value
