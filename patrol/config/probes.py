"""An item's ``readiness``, ``liveness`` and ``depends-on`` keys.

``"readiness": {"http": {"url": "http://127.0.0.1:8080/health"}, "period": 2}``: one
registered probe (its key, with its settings) and the timing keys Kubernetes has. The
probe is looked up in the registry the plugins filled, its ``options`` are the keys of
its settings and its ``validate`` checks them, as for keepalives and backends.

``depends-on`` is read here item by item; whether the ids exist and whether they form a
cycle needs the whole config (:mod:`patrol.config.depends`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from patrol.config.options import read_options
from patrol.config.reader import INT, NUMBER, OBJECT, Kind, Section, child, got
from patrol.plugin.model import DEFAULT_CONDITION, DEPENDENCY_CONDITIONS, ProbeSpec
from patrol.plugin.registry import Registry

if TYPE_CHECKING:
    from patrol.plugin.probe import Probe

#: timing key -> (ProbeSpec field, kind, lowest, highest, lowest excluded)
TIMING: dict[str, tuple[str, Kind, float, float, bool]] = {
    "initial-delay": ("initial_delay", NUMBER, 0, 86400, False),
    "period": ("period", NUMBER, 0.01, 86400, False),
    "timeout": ("timeout", NUMBER, 0, 3600, True),
    "success-threshold": ("success_threshold", INT, 1, 1000, False),
    "failure-threshold": ("failure_threshold", INT, 1, 1000, False),
}
_EMPTY: Mapping[str, str] = MappingProxyType({})


def read_probe(sec: Section, key: str, probes: Registry["Probe"] | None, group: str) -> ProbeSpec | None:
    """The probe at ``key`` (``readiness`` / ``liveness``) of an item, or None when absent
    or wrong (then the errors are in ``sec.report``)."""
    raw = sec.get(key, OBJECT)
    if raw is None:
        return None
    inner = Section(raw, sec.at(key), sec.report)
    report = inner.report
    timing: dict[str, Any] = {}
    for name, (field, kind, low, high, above) in TIMING.items():
        value = inner.get(name, kind)
        if value is None:
            continue
        if value < low or (above and value == low) or value > high:
            bound = f"greater than {low:g}" if above else f"at least {low:g}"
            report.error(inner.at(name), f"must be {bound} and at most {high:g} (got {value:g})")
            continue
        timing[field] = value
    named = [k for k in raw if k.casefold() not in TIMING]
    if not named:
        installed = ", ".join(probes.names()) if probes is not None else ""
        report.error(inner.path, 'names no probe: add one, e.g. {"tcp": 8080} '
                     f"(installed: {installed or 'none'})")
        return None
    if len(named) > 1:
        report.error(inner.path, f"names {len(named)} probes ({', '.join(named)}): one per {key}")
        for k in named:
            inner.raw(k)
        return None
    probe_key = named[0]
    value = inner.raw(probe_key)
    resolved = _resolve(probes, probe_key)
    if probes is None or resolved is None:
        registry: Registry[Probe] = probes if probes is not None else Registry("probe")
        report.error(inner.at(probe_key), registry.missing_hint(probe_key))
        return None
    cls = probes.get(resolved)
    if cls.apps_only and group == "service":
        report.error(inner.at(probe_key), f"the {resolved} probe needs an app (its process or its output): "
                     "services cannot use it")
        return None
    settings = _settings(inner, probe_key, value, cls)
    inner.warn_unread()
    if settings is None:
        return None
    return ProbeSpec(probe=resolved, settings=settings, **timing)


def _resolve(probes: Registry["Probe"] | None, key: str) -> str | None:
    if probes is None:
        return None
    return probes.resolve(key) or probes.resolve(key.lower())


def _settings(inner: Section, key: str, value: Any, cls: type["Probe"]) -> Mapping[str, Any] | None:
    """The probe's settings object, its options checked, or None (errors reported)."""
    path = inner.at(key)
    if not isinstance(value, dict):
        if cls.shorthand is None:
            inner.report.error(path, f"must be an object of the {cls.name} probe's settings {got(value)}")
            return None
        value = {cls.shorthand: value}
    errors = len(inner.report.errors)
    sec = Section(value, path, inner.report)
    settings = read_options(sec, cls.options)
    sec.warn_unread()
    if len(inner.report.errors) > errors:
        return None
    try:
        problems = cls.validate(settings)
    except Exception as exc:  # a plugin's bug must not become a traceback here
        problems = [("", f"the {cls.name} probe could not check it ({type(exc).__name__}: {exc})")]
    for option, message in problems:
        inner.report.error(child(path, option) if option else path, message)
    return None if problems else settings


def read_depends_on(sec: Section) -> Mapping[str, str]:
    """``depends-on`` as written: an object of id -> condition, or an array of ids (each
    then waits for :data:`DEFAULT_CONDITION`). Ids are checked against the config later."""
    raw = sec.raw("depends-on")
    if raw is None:
        return _EMPTY
    at = sec.at("depends-on")
    if isinstance(raw, list):
        pairs = []
        for index, item in enumerate(raw):
            if not isinstance(item, str) or not item:
                sec.report.error(child(at, index), f"must be an app or service id {got(item)}")
            else:
                pairs.append((item, DEFAULT_CONDITION))
    elif isinstance(raw, dict):
        pairs = []
        for item, condition in raw.items():
            if condition not in DEPENDENCY_CONDITIONS:
                sec.report.error(child(at, item), f"must be one of {', '.join(DEPENDENCY_CONDITIONS)} "
                                 f"{got(condition)}")
            else:
                pairs.append((item, condition))
    else:
        sec.report.error(at, f"must be an object of id -> condition, or an array of ids {got(raw)}")
        return _EMPTY
    return MappingProxyType({item.lower(): condition for item, condition in pairs})
