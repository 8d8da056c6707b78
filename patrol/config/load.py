"""Loading a config file: decode JSON (or TOML), then check everything and build the model.

Configs of the original Patrol load unchanged. Unlike the original, nothing is silently
dropped or stopped at: every error of the file is reported at once, each naming the key
and the rule, and unknown keys (likely typos) and clamped values are warned about.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, TypeVar

from patrol.plugin.registry import Registry
from patrol.util import strictjson
from patrol.util.gotime import validate_layout
from patrol.util.safefile import read_small_file
from patrol.config.access import read_http_access, read_udp_access, warn_unauthenticated_pings
from patrol.config.depends import check_dependencies
from patrol.config.instances import check_set_dependencies, check_sets
from patrol.config.items import read_app, read_service
from patrol.plugin.model import (HISTORY, HTTP_LISTEN_DEFAULT, METRICS_LISTEN_DEFAULT, PING_TIMEOUT, TICK_EVERY,
                                 UDP_LISTEN_DEFAULT, AppConfig, Listen, PatrolConfig)
from patrol.config.reader import (ANY, INT, NUMBER, OBJECT, STRING, Kind, Report, Section, child, got, nesting,
                     warn_duplicates)
from patrol.config.rules import id_problem

T = TypeVar("T")
#: Deepest nesting of arrays and objects (TOML: arrays and tables) a config may have. No
#: config needs more, and a deeper one breaks every recursive walk over it (the TOML
#: parser itself, a GUI page showing ``x``, the state file storing ``keyvalue``) at
#: Python's recursion limit: it is refused at the door instead, with this rule named.
MAX_NESTING = 64
#: Largest config file read (10,000 apps take a few MiB); a bigger one is refused
#: unread, as ``/dev/zero`` behind a symlink would otherwise fill the memory
MAX_CONFIG_BYTES = 64 << 20


class ConfigError(Exception):
    """The config cannot be used. ``errors`` holds every problem, one full line each.

    ``unreadable`` is True when the file could not be read or decoded at all (``patrol
    check`` exits 2), False when it decoded but broke rules (exit 1). ``warnings`` are
    those found before giving up, worth showing too: a typo'd key often explains an error.
    """

    def __init__(self, errors: list[str], *, unreadable: bool = False,
                 warnings: list[str] | None = None) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)
        self.unreadable = unreadable
        self.warnings = list(warnings or [])


@dataclass(frozen=True)
class Methods:
    """What the loader needs from the plugin system: the registries to resolve names in."""

    keepalives: Registry[Any]
    services: Registry[Any]
    #: the probes (readiness, liveness); None: no probe is installed
    probes: Registry[Any] | None = None


def load_config(path: str | os.PathLike[str], methods: Methods) -> tuple[PatrolConfig, list[str]]:
    """Read JSON (or TOML when the suffix is .toml) and validate it: (config, warnings)."""
    source = os.fspath(path)
    data, warnings = read_document(Path(path), source)
    try:
        config, more = parse_config(data, methods, source=source, base_dir=str(Path(path).resolve().parent))
    except ConfigError as exc:
        exc.warnings[:0] = warnings
        raise
    return replace(config, source=Path(path)), warnings + more


#: ``PATROL_UNITTEST`` set to this: the original's unit-test mode (short tick and ping timeout)
UNITTEST_VALUE = "I KNOW WHAT I AM DOING"


def adjust_config(config: PatrolConfig) -> PatrolConfig:
    """Apply run-time overrides (the original's unit-test mode) to a loaded config, at the
    start and at each reload."""
    if os.environ.get("PATROL_UNITTEST") == UNITTEST_VALUE:
        return replace(config, tick_every=2, ping_timeout=3)
    return config


def parse_config(data: object, methods: Methods, *, source: str = "config",
                 base_dir: str = "") -> tuple[PatrolConfig, list[str]]:
    """Check a decoded document and build the model; raises ConfigError with every error.

    ``base_dir`` is what a ``working-directory`` starting with ``${CONFIG_DIR}`` expands to.
    """
    report = Report(source, base_dir)
    if data is None:  # as Go: a "null" document is an empty config
        data = {}
    if not isinstance(data, dict):
        report.error("", f"must be an object with apps and services {got(data)}")
        raise ConfigError(report.errors)
    config = _read_top(Section(data, "", report), methods)
    if report.errors:
        raise ConfigError(report.errors, warnings=report.warnings)
    return config, report.warnings


def _read_top(top: Section, methods: Methods) -> PatrolConfig:
    report = top.report
    raw_apps = top.get("apps", OBJECT, {})
    raw_services = top.get("services", OBJECT, {})
    if not raw_apps and not raw_services:
        report.error("", 'has no apps and no services: nothing to supervise (add "apps" or "services")')
    apps = _items(top.at("apps"), raw_apps, "app", report,
                  lambda sec, item_id: read_app(sec, item_id, methods.keepalives, methods.probes))
    services = _items(top.at("services"), raw_services, "service", report,
                      lambda sec, item_id: read_service(sec, item_id, methods.services, methods.probes))
    known = {"app": {k.lower() for k in raw_apps}, "service": {k.lower() for k in raw_services}}
    apps, services = check_dependencies(report, apps, services, known)
    http = _listen(top, "http", HTTP_LISTEN_DEFAULT)
    udp = _listen(top, "udp", UDP_LISTEN_DEFAULT)
    metrics = _listen(top, "metrics", METRICS_LISTEN_DEFAULT) if top.raw("metrics") is not None else None
    advertised = {"http": _addresses(top, "listen-http", http.listen),
                  "udp": _addresses(top, "listen-udp", udp.listen)}
    _require_listeners(report, apps, methods.keepalives, advertised)
    warn_unauthenticated_pings(report, apps, methods.keepalives, http)
    check_sets(report, apps)
    check_set_dependencies(report, {"app": apps, "service": services})
    exit_with = _exit_with(top, apps, {str(k).lower() for k in raw_apps})
    json_timestamp = top.get("json-timestamp", STRING, "")
    if problem := validate_layout(json_timestamp):
        report.error(top.at("json-timestamp"), problem)
    config = PatrolConfig(
        apps=apps,
        services=services,
        tick_every=_clamp(top, "tick-every", TICK_EVERY, NUMBER),
        history=_clamp(top, "history", HISTORY, INT),
        json_timestamp=json_timestamp,
        ping_timeout=_clamp(top, "ping-timeout", PING_TIMEOUT, NUMBER),
        listen_http=advertised["http"],
        listen_udp=advertised["udp"],
        http=http,
        udp=udp,
        x=top.get("x", ANY),
        state_file=top.get("state-file", STRING, ""),
        exit_with=exit_with,
        metrics=metrics,
    )
    top.warn_unread()
    return config


def _exit_with(top: Section, apps: Mapping[str, AppConfig], written: set[str]) -> str:
    """(new) ``exit-with``: the app whose own exit ends Patrol (a container's main process)."""
    value = top.get("exit-with", STRING, "")
    if not value:
        return ""
    app = apps.get(value.lower())
    if app is None:
        if value.lower() not in written:  # an app with errors is missing from ``apps``, not unknown
            top.report.error(top.at("exit-with"), f'must name an app of this config (got "{value}")')
        return ""
    if app.instances:
        top.report.error(top.at("exit-with"), f'names the set "{app.id}" of {app.instances} instances: '
                         "it must name one app (a set has no single exit code)")
        return ""
    return app.id


def _items(path: str, raw: Mapping[str, Any], noun: str, report: Report,
           read: Callable[[Section, str], T | None]) -> Mapping[str, T]:
    """Apps or services by lower-cased id; ids are unique case-insensitively, as the original's."""
    items: dict[str, T] = {}
    seen: dict[str, str] = {}
    warn_duplicates(report, path, raw)
    for item_id, body in raw.items():
        # one string for the id, the key and the decoder's text when already lower-case
        # (``lower()`` makes a new one each call: two more strings per item, kept for good)
        lowered = item_id.lower()
        if lowered == item_id:
            lowered = item_id
        at = child(path, item_id)
        problem = id_problem(item_id)
        if problem:
            report.error(at, f"{noun} id {problem}")
        elif lowered in seen:
            problem = f"duplicate {noun} id"
            report.error(at, f'{problem} (ids are case-insensitive; also "{seen[lowered]}")')
        else:
            seen[lowered] = item_id
        if not isinstance(body, dict):
            report.error(at, f"must be an object {got(body)}")
            continue
        item = read(Section(body, at, report), lowered)
        if item is not None and problem is None:
            items[lowered] = item
    return MappingProxyType(items)


def _listen(top: Section, key: str, default: str) -> Listen:
    """``http`` / ``udp`` / ``metrics``: the address the daemon binds (the daemon's default
    when empty) and who may use it."""
    sec = Section(top.get(key, OBJECT, {}), top.at(key), top.report)
    listen = Listen(sec.get("listen", STRING, "") or default, sec.get("x", ANY))
    if key in ("http", "metrics"):
        listen = read_http_access(sec, listen, key)
    else:
        listen = read_udp_access(sec, listen)
    sec.warn_unread()
    return listen


def _addresses(top: Section, key: str, bound: str) -> tuple[str, ...]:
    """Addresses advertised to apps; by default the one bound (as the daemon did)."""
    given = top.strings(key, lambda a: "must not be empty" if not a.strip() else None)
    return tuple(a for a in given if a.strip()) or (bound,)


def _require_listeners(report: Report, apps: Mapping[str, AppConfig], keepalives: Registry[Any],
                       advertised: Mapping[str, tuple[str, ...]]) -> None:
    """Apps kept alive by pings must be told where to send them: an app whose keepalive pings
    over a transport needs a listen address of that transport (``listen-http``/``listen-udp``)."""
    for app in apps.values():
        transport = keepalives.get(app.keepalive).ping_transport
        if transport in advertised and not advertised[transport]:
            report.error(f"listen-{transport}", f"must list at least one address: app "
                         f'"{app.id}" is kept alive by {transport} pings')


def _clamp(top: Section, key: str, bounds: tuple[int, int, int], kind: Kind) -> Any:
    """0 or absent -> default; out of range -> the bound, with a warning (the original was silent)."""
    low, default, high = bounds
    value = top.get(key, kind, 0)
    if value == 0:
        return kind.convert(default)
    limited = min(max(value, low), high)
    if limited != value:
        top.report.warn(top.at(key), f"{value:g} is outside {low}..{high}; using {limited:g}")
    return kind.convert(limited)


# -- decoding --------------------------------------------------------------------------

class _Object(dict[str, Any]):
    """A JSON object that remembers keys given twice (the last value wins, as in Go)."""

    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        obj.duplicates = tuple(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    return obj


_JSON = strictjson.decoder(object_pairs_hook=_object)


def read_document(path: Path, source: str) -> tuple[Any, list[str]]:
    """The decoded file and decoding warnings; ConfigError(unreadable=True) when impossible.

    Read as a pid file is (``patrol.util.safefile``): a FIFO or device at the path is
    refused at once, naming it, instead of blocking ``patrol check``, ``patrol run`` or a
    reload for ever; a huge file is refused instead of filling the memory.
    """
    try:
        data, _ = read_small_file(str(path), MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError([f"{source}: is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a Patrol config"],
                              unreadable=True)
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the file: {exc.strerror or exc}"], unreadable=True)
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: is not UTF-8 text (bad byte at offset {exc.start})"],
                          unreadable=True)
    warnings: list[str] = []
    if path.suffix.lower() == ".toml":
        data = _decode_toml(text, source)
    else:
        data, warnings = _decode_json(text, source)
    if nesting(data) > MAX_NESTING:
        raise ConfigError([_too_deep(source)], unreadable=True)
    if path.suffix.lower() == ".toml":
        data = _plain(data)
    return data, warnings


def _too_deep(source: str) -> str:
    return (f"{source}: nested too deeply: arrays and objects (TOML: arrays and tables) may be nested "
            f"at most {MAX_NESTING} levels deep")


def _decode_json(text: str, source: str) -> tuple[Any, list[str]]:
    """The first JSON value, as Go's streaming decoder; anything after it is only warned about."""
    start = len(text) - len(text.lstrip(" \t\r\n"))
    try:
        value, end = _JSON.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{source}: line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}"],
                          unreadable=True)
    except ValueError as exc:  # NaN, Infinity, a number out of range (patrol.util.strictjson)
        raise ConfigError([f"{source}: invalid JSON: {exc}"], unreadable=True)
    except RecursionError:
        raise ConfigError([_too_deep(source)], unreadable=True)
    rest = re.search(r"[^ \t\r\n]", text[end:])
    if rest is None:
        return value, []
    line = text.count("\n", 0, end + rest.start()) + 1
    return value, [f"{source}: line {line}: ignoring text after the JSON document"]


def _decode_toml(text: str, source: str) -> Any:
    import tomllib  # here, not at the top: its compiled patterns stay for good, and a JSON config never needs them

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: invalid TOML: {exc}"], unreadable=True)
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError([_too_deep(source)], unreadable=True)


def _plain(value: Any) -> Any:
    """TOML dates and times become ISO strings, so TOML carries exactly what JSON can."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return value
