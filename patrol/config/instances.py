"""Sets of instances and restart policies: reading their keys, and a set's copies.

``instances: N`` makes one app definition a *set* of N copies named ``ID-0`` ..
``ID-(N-1)``, each a full item of its own. ``{instance}`` in ``args``, the values of
``env``, ``pid-path``, ``log-directory`` and ``env-file`` becomes the copy's number.
The number of copies may change at run time (``patrol scale``), so copies are made
from the set's definition by :func:`expand`, not stored in the config.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from patrol.config.reader import INT, STRING, Report, Section, child, got, is_int, show
from patrol.config.rules import ID_MAX
from patrol.plugin.model import RESTART_MODES, RESTART_POLICIES, AppConfig

#: what a copy's number replaces
INSTANCE = "{instance}"
#: the most copies a set may have (its copies' ids must stay valid ids)
MAX_INSTANCES = 1000
#: the longest id of a set: ``ID-999`` must still be a valid id
SET_ID_MAX = ID_MAX - 1 - len(str(MAX_INSTANCES - 1))


def read_instance_keys(sec: Section, app_id: str) -> dict[str, Any]:
    """``instances`` and ``restart-mode``. (A keepalive that reads a pid file checks
    that a set's ``pid-path`` holds ``{instance}``: every copy needs its own.)"""
    instances = sec.get("instances", INT)
    mode = sec.get("restart-mode", STRING, "rolling")
    if mode not in RESTART_MODES:
        sec.report.error(sec.at("restart-mode"), f"must be one of {', '.join(RESTART_MODES)} (got {show(mode)})")
        mode = "rolling"
    if instances is None:
        return dict(restart_mode=mode)
    if not 1 <= instances <= MAX_INSTANCES:
        sec.report.error(sec.at("instances"), f"must be from 1 to {MAX_INSTANCES} (got {instances})")
        return dict(restart_mode=mode)
    if len(app_id) > SET_ID_MAX:
        sec.report.error(sec.at("instances"), f"needs an app id of at most {SET_ID_MAX} characters: the copies "
                         f"are named ID-0 .. ID-{MAX_INSTANCES - 1} (got {len(app_id)} characters)")
    return dict(instances=int(instances), restart_mode=mode)


#: ``success-exit-codes`` when not set: one shared (frozen) set, not one per app
SUCCESS_EXIT_CODES: frozenset[int] = frozenset({0})


def read_restart_keys(sec: Section) -> dict[str, Any]:
    """``restart`` (the policy) and ``success-exit-codes`` (what ``on-failure`` calls success)."""
    policy = sec.get("restart", STRING, "always")
    if policy not in RESTART_POLICIES:
        sec.report.error(sec.at("restart"), f"must be one of {', '.join(RESTART_POLICIES)} (got {show(policy)})")
        policy = "always"
    codes = _success_codes(sec)
    if codes is not None and policy != "on-failure":
        sec.report.warn(sec.at("success-exit-codes"), 'is only used with "restart": "on-failure"')
    return dict(restart=policy, success_exit_codes=codes if codes is not None else SUCCESS_EXIT_CODES)


def _success_codes(sec: Section) -> frozenset[int] | None:
    key = "success-exit-codes"
    value = sec.raw(key)
    if value is None:
        return None
    if not isinstance(value, list):
        sec.report.error(sec.at(key), f"must be an array of exit codes 0..255 {got(value)}")
        return None
    codes: set[int] = set()
    for index, code in enumerate(value):
        if not is_int(code) or not 0 <= code <= 255:
            sec.report.error(child(sec.at(key), index), f"must be an exit code 0..255 {got(code)}")
        else:
            codes.add(int(code))
    return frozenset(codes)


def check_sets(report: Report, apps: Mapping[str, AppConfig]) -> None:
    """No app's id may be one a set's copy could take (``web-3`` beside a set ``web``)."""
    for app in apps.values():
        match = re.fullmatch(r"(.+)-(\d+)", app.id)
        if match is None:
            continue
        owner = apps.get(match.group(1))
        if owner is not None and owner.instances and int(match.group(2)) < MAX_INSTANCES:
            report.error(child("apps", app.id), f'is the id of a copy of the set "{owner.id}" (instances: its '
                         f"copies are {owner.id}-0 .. {owner.id}-{MAX_INSTANCES - 1}); choose another id")


def check_set_dependencies(report: Report, tables: Mapping[str, Mapping[str, Any]]) -> None:
    """``depends-on`` may not name a set of instances: it has no single state to wait
    for (and its copies' ids are not the config's). ``tables``: group -> items, with
    ``depends_on`` already in the ``group/id`` form."""
    sets = {f"app/{app.id}": app.instances for app in tables.get("app", {}).values() if app.instances}
    for group, table in tables.items():
        for item in table.values():
            for key in item.depends_on:
                if key in sets:
                    report.error(child(child(f"{group}s", item.id), "depends-on"),
                                 f'{key}: names a set of {sets[key]} instances, which has no single state to '
                                 "wait for: depending on a set is not supported")


def copy_id(set_id: str, instance: int) -> str:
    return f"{set_id}-{instance}"


def expand(app: AppConfig, count: int) -> dict[str, AppConfig]:
    """The items an app definition makes: itself, or the first ``count`` copies of a set."""
    if not app.instances:
        return {app.id: app}
    return {copy_id(app.id, k): make_copy(app, k) for k in range(count)}


def make_copy(app: AppConfig, k: int) -> AppConfig:
    """Copy ``k`` of the set ``app``: its own id, and ``{instance}`` replaced by ``k``."""
    number = str(k)

    def put(text: str) -> str:
        return text.replace(INSTANCE, number)

    env = tuple(key + "=" + put(value) for key, _, value in (entry.partition("=") for entry in app.env))
    return dataclasses.replace(app, id=copy_id(app.id, k), instance_of=app.id, instance=k,
                               args=tuple(put(a) for a in app.args), env=env, pid_path=put(app.pid_path),
                               log_directory=put(app.log_directory), env_file=put(app.env_file))


def expand_all(apps: Mapping[str, AppConfig], sizes: Mapping[str, int]) -> dict[str, AppConfig]:
    """Every item of ``apps``; a set has ``sizes[id]`` copies (its ``instances`` if not given)."""
    items: dict[str, AppConfig] = {}
    for app in apps.values():
        items.update(expand(app, sizes.get(app.id, app.instances)))
    return items
