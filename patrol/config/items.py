"""One app or one service of the config: every key checked, all errors kept.

The keepalive or service backend named by an item is looked up in the registry the
plugins filled; its ``options`` become extra keys of that item and its ``validate``
gets the finished item, so plugins check their own settings with the same messages.
"""

from __future__ import annotations

import sys
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from patrol.plugin.registry import Registry
from patrol.plugin.model import ACTIONS, AppConfig, Backoff, Option, ServiceConfig, default_of, joined
from patrol.config.reader import (ANY, BOOL, INT, MAPPING, NAME_OR_INT, NUMBER, STRING, Kind, Report, Section,
                     child, got, is_int, show)
from patrol.config.instances import read_instance_keys, read_restart_keys
from patrol.config.options import read_options
from patrol.config.probes import read_depends_on, read_probe
from patrol.config.process_keys import read_process_keys
from patrol.config.rules import (NAME_MAX, SECRET_MAX, SERVICE_MAX, byte_length, expand_config_dir, expand_home,
                    path_problem, service_problem, signal_number)

if TYPE_CHECKING:
    from patrol.plugin.keepalive import KeepAlive
    from patrol.plugin.probe import Probe
    from patrol.plugin.service import ServiceBackend

_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})
#: log directories that hold much more than an app's logs (an absolute log-directory,
#: or a working-directory of "/", can name them)
SYSTEM_DIRECTORIES = frozenset({"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/opt", "/proc", "/root",
                                "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/log"})


#: fields whose text is often the same in many apps (one directory, one environment)
SHARED_TEXT = ("working_directory", "binary", "log_directory", "env_file")
SHARED_TEXTS = ("env",)


def _shared(values: dict[str, Any], report: Report) -> dict[str, Any]:
    """The same text in many apps' configs kept once (the decoder makes a string per
    occurrence; thousands of apps often share their directories and environment). An
    environment's tuple too: apps with the same ``env`` share one (``report.texts`` lives
    as long as the load: a tuple cannot be interned, and a table kept for Patrol's life
    would keep the environments of configs long replaced)."""
    for key in SHARED_TEXT:
        if type(values.get(key)) is str:
            values[key] = sys.intern(values[key])
    for key in SHARED_TEXTS:
        texts = values.get(key)
        if isinstance(texts, tuple):
            texts = tuple(sys.intern(t) if type(t) is str else t for t in texts)
            values[key] = report.texts.setdefault(texts, texts)
    return values


def read_app(sec: Section, app_id: str, keepalives: Registry[KeepAlive],
             probes: Registry[Probe] | None = None) -> AppConfig | None:
    """The app in ``sec``, or None when it has errors (they are in ``sec.report``)."""
    errors = len(sec.report.errors)
    method = _keepalive(sec, keepalives)
    cls = keepalives.get(method) if method else None
    needs_pid = cls is not None and cls.requires_pid_path
    values = dict(
        id=app_id,
        keepalive=method or "",
        name=_text(sec, "name", NAME_MAX, required=True),
        working_directory=_working_directory(sec),
        binary=_path(sec, "binary", required=True),
        log_directory=_path(sec, "log-directory", required=True),
        pid_path=_path(sec, "pid-path", required=True) if needs_pid else sec.get("pid-path", STRING, ""),
        **_common(sec),
        execute_timeout=_number(sec, "execute-timeout", 0.0),
        pid_verify=sec.get("pid-verify", BOOL, False),
        args=sec.strings("args", _no_nul),
        env=sec.strings("env", _env_problem),
        env_parent=sec.get("env-parent", BOOL, False),
        std_merge=sec.get("std-merge", BOOL, False),
        stop_signal=_signal(sec, "stop-signal", default_of(AppConfig, "stop_signal")),
        restart_signal=_signal(sec, "restart-signal", default_of(AppConfig, "restart_signal")),
        stop_timeout=_number(sec, "stop-timeout", default_of(AppConfig, "stop_timeout")),
        backoff=_backoff(sec),
        **_log_limits(sec),
        options=read_options(sec, cls.options if cls else ()),
        readiness=read_probe(sec, "readiness", probes, "app"),
        liveness=read_probe(sec, "liveness", probes, "app"),
        depends_on=read_depends_on(sec),
        **read_process_keys(sec),
        **read_restart_keys(sec),
        **read_instance_keys(sec, app_id),
    )
    sec.warn_unread()
    if len(sec.report.errors) > errors:
        return None
    app = AppConfig(**_shared(values, sec.report))
    log_root = joined(app.working_directory, app.log_directory)  # (not interned: not kept)
    if log_root in SYSTEM_DIRECTORIES:
        sec.report.warn(sec.at("log-directory"), f"is {log_root}, a directory of the system: the GUI's log "
                        "browser lists and serves every file below it to whoever may read this app's logs "
                        "(give the app a log directory of its own)")
    _plugin_checks(sec, [cls] if cls else [], app)
    return app


def read_service(sec: Section, service_id: str, backends: Registry[ServiceBackend],
                 probes: Registry[Probe] | None = None) -> ServiceConfig | None:
    """The service in ``sec``, or None when it has errors (they are in ``sec.report``)."""
    errors = len(sec.report.errors)
    management = _management(sec, backends)
    classes = [backends.get(name) for name in dict.fromkeys(management.values())]
    options: dict[str, Option] = {}
    for cls in classes:  # the union of the backends' options; the first of a key wins
        for option in cls.options:
            options.setdefault(option.key, option)
    values = dict(
        id=service_id,
        service=_service_name(sec),
        name=_text(sec, "name", NAME_MAX, required=True),
        **_common(sec),
        management=MappingProxyType(management),
        parameters=MappingProxyType(
            {a: sec.get(f"management-{a}-parameter", STRING, "") or a for a in ACTIONS}),
        ignore_exit_codes=MappingProxyType(
            {a: _exit_codes(sec, f"ignore-exit-codes-{a}") for a in ACTIONS}),
        status_timeout=_number(sec, "status-timeout", default_of(ServiceConfig, "status_timeout"), above=True),
        command_timeout=_number(sec, "command-timeout", default_of(ServiceConfig, "command_timeout"), above=True),
        stop_on_shutdown=sec.get("stop-on-shutdown", BOOL, False),
        options=read_options(sec, options.values()),
        readiness=read_probe(sec, "readiness", probes, "service"),
        depends_on=read_depends_on(sec),
    )
    if sec.has("ignore-exit-codes"):
        sec.raw("ignore-exit-codes")
        sec.report.warn(sec.at("ignore-exit-codes"), "does nothing (the original Patrol never read "
                        'it either); use "ignore-exit-codes-start", "-status", "-stop" or "-restart"')
    sec.warn_unread()
    if len(sec.report.errors) > errors:
        return None
    service = ServiceConfig(**values)
    _plugin_checks(sec, classes, service)
    return service


def _common(sec: Section) -> dict[str, Any]:
    """The keys apps and services share."""
    return dict(
        disabled=sec.get("disabled", BOOL, False),
        keyvalue=sec.get("keyvalue", MAPPING, _EMPTY),
        keyvalue_clear=sec.get("keyvalue-clear", BOOL, False),
        secret=_text(sec, "secret", SECRET_MAX),
        x=sec.get("x", ANY),
    )


# -- methods ---------------------------------------------------------------------------

def _method_value(sec: Section, key: str) -> int | str | None:
    """The method named at ``key``; 0 and "" mean "not chosen", as in the original."""
    value = sec.get(key, NAME_OR_INT)
    return None if value in (0, "") else value


def _resolve(sec: Section, key: str, value: int | str, registry: Registry[Any]) -> str | None:
    name = registry.resolve(value)
    if name is None and isinstance(value, str):
        name = registry.resolve(value.lower())
        if name is None and registry.conflict(value.lower()) is not None:
            value = value.lower()  # say which two plugins registered it
    if name is None:
        sec.report.error(sec.at(key), registry.missing_hint(value))
    return name


def _choices(registry: Registry[Any]) -> str:
    """``installed: pid-patrol (1), http (3)``: what a user may write."""
    aliases: dict[str, list[str]] = {}
    for alias, name in registry.aliases.items():
        aliases.setdefault(name, []).append(str(alias))
    names = [f"{n} ({', '.join(aliases[n])})" if n in aliases else n for n in registry.names()]
    return "installed: " + (", ".join(names) or "none")


def _keepalive(sec: Section, keepalives: Registry[Any]) -> str | None:
    value = _method_value(sec, "keepalive")
    if value is None:
        if not sec.failed("keepalive"):
            sec.report.error(sec.at("keepalive"),
                             f"is required: choose a keepalive method ({_choices(keepalives)})")
        return None
    return _resolve(sec, "keepalive", value, keepalives)


def _management(sec: Section, backends: Registry[Any]) -> dict[str, str]:
    """action -> backend: ``management`` for all four, else all four ``management-ACTION``.

    As the original: per-action keys count only when one of start/status/stop is set
    (then all four are required); otherwise ``management`` itself is missing.
    """
    general = _method_value(sec, "management")
    per_action = {a: _method_value(sec, f"management-{a}") for a in ACTIONS}
    if general is not None:
        for action, value in per_action.items():
            if value is not None:
                sec.report.warn(sec.at(f"management-{action}"),
                                'is ignored: "management" is set and applies to all four actions')
        name = _resolve(sec, "management", general, backends)
        return dict.fromkeys(ACTIONS, name) if name else {}
    if all(per_action[a] is None for a in ("start", "status", "stop")):
        if sec.failed("management"):
            return {}
        sec.report.error(sec.at("management"), "is required: choose a service backend "
                         f"({_choices(backends)}), or set management-start, -status, -stop and -restart")
        return {}
    chosen = {}
    for action, value in per_action.items():
        key = f"management-{action}"
        if value is None:
            if not sec.failed(key):
                sec.report.error(sec.at(key), "is required once any management-ACTION key is set "
                                 '(or use "management" for all four actions)')
        elif name := _resolve(sec, key, value, backends):
            chosen[action] = name
    return chosen if len(chosen) == len(ACTIONS) else {}


def _plugin_checks(sec: Section, classes: list[Any], item: Any) -> None:
    for cls in classes:
        try:
            problems = cls.validate(item)
        except Exception as exc:
            problems = [("", f"{cls.name} could not check it ({type(exc).__name__}: {exc})")]
        for key, message in problems:
            sec.report.error(sec.at(key) if key else sec.path, message)


# -- values ----------------------------------------------------------------------------

def _text(sec: Section, key: str, limit: int, *, required: bool = False) -> str:
    value = sec.get(key, STRING, "")
    if required and value == "" and not sec.failed(key):
        sec.report.error(sec.at(key), "is required and must not be empty")
    elif byte_length(value) > limit:
        sec.report.error(sec.at(key), f"must be at most {limit} bytes (got {byte_length(value)})")
        return ""
    return value


def _path(sec: Section, key: str, *, required: bool) -> str:
    value = sec.get(key, STRING, "")
    if value == "":
        if required and not sec.failed(key):
            sec.report.error(sec.at(key), "is required and must not be empty")
    elif problem := path_problem(value):
        sec.report.error(sec.at(key), problem)
    return value


def _working_directory(sec: Section) -> str:
    written = sec.get("working-directory", STRING, "")
    value = expand_home(expand_config_dir(written, sec.report.base_dir))
    if not written:
        if not sec.failed("working-directory"):
            sec.report.error(sec.at("working-directory"), "is required and must not be empty")
    elif not value.startswith("/"):
        hint = " (no home directory to expand ~ with)" if written.startswith("~/") else ""
        sec.report.error(sec.at("working-directory"),
                         f"must be an absolute path (got {show(written)}){hint}")
    elif problem := path_problem(value):
        sec.report.error(sec.at("working-directory"), problem)
    return value


def _service_name(sec: Section) -> str:
    name = _text(sec, "service", SERVICE_MAX, required=True)
    if name and (problem := service_problem(name)):
        sec.report.error(sec.at("service"), problem)
    return name


def _no_nul(value: str) -> str | None:
    return "must not contain a NUL character" if "\0" in value else None


def _env_problem(entry: str) -> str | None:
    key, equals, _ = entry.partition("=")
    if not key or not equals:
        return f"must be KEY=VALUE (got {show(entry)})"
    return _no_nul(entry)


def _number(sec: Section, key: str, default: float, *, low: float = 0, above: bool = False,
            high: float | None = None, kind: Kind = NUMBER) -> Any:
    value = sec.get(key, kind, default)
    if value < low or (above and value == low):
        bound = f"greater than {low:g}" if above else f"at least {low:g}"
        sec.report.error(sec.at(key), f"must be {bound} (got {value:g})")
        return default
    if high is not None and value > high:
        sec.report.error(sec.at(key), f"must be at most {high:g} (got {value:g})")
        return default
    return value


def _signal(sec: Section, key: str, default: int) -> int:
    value = sec.get(key, NAME_OR_INT)
    if value is None:
        return default
    number = signal_number(value)
    if number is None:
        sec.report.error(sec.at(key),
                         f'must be a signal name such as "SIGTERM" or a number {got(value)}')
        return default
    return number


#: Bounds of the backoff keys: a wait longer than a day, or a ladder steeper than x100 a
#: step, is a typo, not a policy (and huge values used to overflow the computation).
BACKOFF_LONGEST = 86400.0
BACKOFF_FACTOR_MAX = 100.0


#: the defaults, shared by every app that sets no ``backoff-*`` key (the dataclass is frozen)
_DEFAULT_BACKOFF = Backoff()


def _backoff(sec: Section) -> Backoff:
    d = _DEFAULT_BACKOFF
    backoff = Backoff(
        base=_number(sec, "backoff-base", d.base, high=BACKOFF_LONGEST),
        factor=_number(sec, "backoff-factor", d.factor, low=1, high=BACKOFF_FACTOR_MAX),
        max=_number(sec, "backoff-max", d.max, high=BACKOFF_LONGEST),
        reset=_number(sec, "backoff-reset", d.reset, high=BACKOFF_LONGEST),
        limit=_number(sec, "start-limit", d.limit, kind=INT),
    )
    if backoff.max < backoff.base:
        sec.report.error(sec.at("backoff-max"),
                         f"must be at least backoff-base ({backoff.max:g} < {backoff.base:g})")
    return d if backoff == d else backoff


#: the most rotated generations per log file (each rotation renames them all)
LOG_MAX_FILES = 100
#: the default per-directory budget, in multiples of log-max-bytes
LOG_BUDGET_FILES = 20
#: the longest log-max-age-days (100 years: more is a typo)
LOG_MAX_AGE_DAYS = 36500.0


def _log_limits(sec: Section) -> dict[str, Any]:
    max_bytes = _number(sec, "log-max-bytes", default_of(AppConfig, "log_max_bytes"), kind=INT)
    max_files = _number(sec, "log-max-files", default_of(AppConfig, "log_max_files"), kind=INT)
    if max_files > LOG_MAX_FILES:
        sec.report.error(sec.at("log-max-files"), f"must be at most {LOG_MAX_FILES} (got {max_files})")
        max_files = default_of(AppConfig, "log_max_files")
    total = _number(sec, "log-max-total-bytes", LOG_BUDGET_FILES * max_bytes, kind=INT)
    age = _number(sec, "log-max-age-days", default_of(AppConfig, "log_max_age_days"), high=LOG_MAX_AGE_DAYS)
    return dict(log_max_bytes=max_bytes, log_max_files=max_files, log_max_total_bytes=total,
                log_max_total_bytes_set=sec.raw("log-max-total-bytes") is not None,
                log_max_age_days=age, log_compress=sec.get("log-compress", BOOL, False))


def _exit_codes(sec: Section, key: str) -> frozenset[int]:
    value = sec.raw(key)
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        sec.report.error(sec.at(key), f"must be an array of exit codes 1..255 {got(value)}")
        return frozenset()
    codes: set[int] = set()
    for index, code in enumerate(value):
        path = child(sec.at(key), index)
        if not is_int(code) or not 1 <= code <= 255:
            sec.report.error(path, f"must be an exit code 1..255 {got(code)}")
        elif code in codes:
            sec.report.error(path, f"duplicate exit code {code}")
        else:
            codes.add(code)
    return frozenset(codes)

