"""An item's configuration as its detail page shows it, with secrets masked.

Every key of the config model is shown (fields added to the model later appear under
their config key by themselves), and the values of anything that looks like a secret
(an item's ``secret``, environment variables, options and ``x`` keys named like
passwords, tokens or keys) are replaced by a mask, at any depth.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import signal
from dataclasses import dataclass
from typing import Any

from patrol.plugin.model import AppConfig, ServiceConfig
from patrol.web.gui import fmt

MASK = "••••••"
#: names of environment variables, options and ``x`` keys whose values are hidden
SENSITIVE = re.compile(r"pass|secret|token|key|auth|cred|private|cookie|session", re.IGNORECASE)


@dataclass(frozen=True)
class Setting:
    """One configuration key as shown on a detail page."""

    key: str
    value: str
    masked: bool = False


def app_settings(cfg: AppConfig) -> list[Setting]:
    b = cfg.backoff
    rows = [
        Setting("keepalive", cfg.keepalive),
        Setting("name", cfg.name),
        Setting("binary", f"{cfg.binary}  →  {cfg.program}"),
        Setting("args", shlex.join(cfg.args) if cfg.args else "—"),
        Setting("working-directory", cfg.working_directory),
        Setting("log-directory", f"{cfg.log_directory}  →  {cfg.log_root}"),
        Setting("std-merge", _bool(cfg.std_merge)),
    ]
    if cfg.pid_path:
        rows.append(Setting("pid-path", f"{cfg.pid_path}  →  {cfg.pid_file}"))
        rows.append(Setting("pid-verify", _bool(cfg.pid_verify)))
    env = [_env_entry(e) for e in cfg.env]
    rows += [
        Setting("env", "\n".join(e for e, _ in env) or "—", any(m for _, m in env)),
        Setting("env-parent", _bool(cfg.env_parent)),
        Setting("execute-timeout", f"{cfg.execute_timeout:g} s" if cfg.execute_timeout else "none"),
        Setting("stop-signal", _signal(cfg.stop_signal)),
        Setting("restart-signal", _signal(cfg.restart_signal)),
        Setting("stop-timeout", f"{cfg.stop_timeout:g} s"),
        Setting("backoff", f"base {b.base:g} s, factor {b.factor:g}, max {b.max:g} s, reset after {b.reset:g} s up"),
        Setting("start-limit", str(b.limit) if b.limit else "none (keeps retrying)"),
    ]
    rotate = cfg.log_max_bytes
    rows.append(Setting("log-max-bytes", f"{fmt.size(rotate)} (then rotated)" if rotate else "never rotated"))
    if rotate:
        rows.append(Setting("log-max-files", f"{cfg.log_max_files} rotated files kept" if cfg.log_max_files
                            else "none kept (a full file is deleted)"))
    budget = cfg.log_max_total_bytes
    whose = "for the log directory" if cfg.log_max_total_bytes_set else "as its share of the log directory's budget"
    rows.append(Setting("log-max-total-bytes", f"{fmt.size(budget)} {whose}" if budget else "no limit"))
    return rows + health_settings(cfg) + _common_settings(cfg) + _other_settings(cfg, APP_SHOWN)


def service_settings(cfg: ServiceConfig) -> list[Setting]:
    rows = [Setting("service", cfg.service), Setting("name", cfg.name)]
    for action, backend in cfg.management.items():
        ignored = ", ".join(str(c) for c in sorted(cfg.ignore_exit_codes.get(action, ()))) or "none"
        rows.append(Setting(f"{action}", f"{backend}: {cfg.parameters[action]} (ignored exit codes: {ignored})"))
    rows += [
        Setting("status-timeout", f"{cfg.status_timeout:g} s"),
        Setting("command-timeout", f"{cfg.command_timeout:g} s"),
        Setting("stop-on-shutdown", _bool(cfg.stop_on_shutdown)),
    ]
    return rows + health_settings(cfg) + _common_settings(cfg) + _other_settings(cfg, SERVICE_SHOWN)


def health_settings(cfg: "AppConfig | ServiceConfig") -> list[Setting]:
    """``readiness``, ``liveness`` and ``depends-on`` (docs/health.md), when set."""
    rows = []
    for key in ("readiness", "liveness"):
        spec = getattr(cfg, key, None)
        if spec is not None:
            settings = mask({k: list(v) if isinstance(v, tuple) else v for k, v in spec.settings.items()})
            rows.append(Setting(key, f"{spec.probe} {to_json(settings)}: every {spec.period:g} s (first after "
                                f"{spec.initial_delay:g} s), timeout {spec.timeout:g} s, {spec.success_threshold} "
                                f"success(es) to pass, {spec.failure_threshold} failure(s) to fail"))
    if cfg.depends_on:
        rows.append(Setting("depends-on", ", ".join(f"{k}: {v}" for k, v in sorted(cfg.depends_on.items()))))
    return rows


def _common_settings(cfg: "AppConfig | ServiceConfig") -> list[Setting]:
    rows = [
        Setting("disabled", _bool(cfg.disabled) + " (at start)"),
        Setting("keyvalue-clear", _bool(cfg.keyvalue_clear)),
        Setting("secret", f"{MASK} (set)" if cfg.secret else "none", bool(cfg.secret)),
    ]
    for key, value in cfg.options.items():
        hidden = bool(SENSITIVE.search(key)) and value not in ("", None)
        rows.append(Setting(key, MASK if hidden else to_json(value), hidden))
    if cfg.x is not None:
        masked = mask(cfg.x)
        rows.append(Setting("x", to_json(masked, indent=2), masked != cfg.x))
    return rows


#: config fields the curated lists above show (or deliberately leave to other sections)
_COMMON_SHOWN = {"id", "name", "disabled", "keyvalue", "keyvalue_clear", "secret", "x", "options", "readiness",
                 "liveness", "depends_on"}
APP_SHOWN = _COMMON_SHOWN | {
    "keepalive", "binary", "working_directory", "log_directory", "pid_path", "pid_verify", "execute_timeout",
    "args", "env", "env_parent", "std_merge", "stop_signal", "restart_signal", "stop_timeout", "backoff",
    "log_max_bytes", "log_max_files", "log_max_total_bytes"}
SERVICE_SHOWN = _COMMON_SHOWN | {
    "service", "management", "parameters", "ignore_exit_codes", "status_timeout", "command_timeout",
    "stop_on_shutdown"}


def _other_settings(cfg: Any, shown: set[str]) -> list[Setting]:
    """Fields added to the config model later still show up, under their config key."""
    rows = []
    for f in dataclasses.fields(cfg):
        if f.name not in shown:
            value = getattr(cfg, f.name)
            hidden = bool(SENSITIVE.search(f.name)) and value not in ("", None)
            rows.append(Setting(f.name.replace("_", "-"), MASK if hidden else to_json(mask(value)), hidden))
    return rows


def _env_entry(entry: str) -> tuple[str, bool]:
    name, sep, value = entry.partition("=")
    if sep and value and SENSITIVE.search(name):
        return f"{name}={MASK}", True
    return entry, False


def mask(value: Any) -> Any:
    """``value`` with the values of sensitive-looking keys replaced, at any depth."""
    if isinstance(value, dict):
        return {k: MASK if SENSITIVE.search(str(k)) and v not in ("", None) else mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def to_json(value: Any, indent: int | None = None) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=indent, sort_keys=indent is not None, default=str)


def _bool(value: bool) -> str:
    return "yes" if value else "no"


def _signal(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return str(number)


def settings_of(cfg: AppConfig | ServiceConfig) -> list[Setting]:
    """An app's or a service's settings."""
    return app_settings(cfg) if isinstance(cfg, AppConfig) else service_settings(cfg)
