"""The keys that say who an app runs as and with what: ``user``, ``group``, ``umask``,
``nice``, ``limits`` and ``env-file``.

Users and groups are looked up when the config is loaded (so an unknown user is a
config error naming the key, not a start failure found at 3 a.m.), and only a Patrol
running as root may use them: nobody else can start a program as another user.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
from types import MappingProxyType
from typing import Any

from patrol.config.reader import (INT, NAME_OR_INT, OBJECT, STRING, Section, child, frozen_mapping, got, is_int,
                                  show)
from patrol.config.rules import path_problem
from patrol.plugin.model import LIMIT_NAMES, UNLIMITED, RunAs

NICE_RANGE = (-20, 19)
#: the largest limit value (``rlim_t`` is 64 bits; Python's ``resource`` takes up to this)
LIMIT_MAX = 2**63 - 1
_UMASK = re.compile(r"0?[0-7]{1,3}")


def read_process_keys(sec: Section) -> dict[str, Any]:
    """The values of these keys for the app in ``sec`` (errors go to ``sec.report``)."""
    return dict(run_as=_run_as(sec), umask=_umask(sec), nice=_nice(sec), limits=_limits(sec),
                env_file=_env_file(sec))


def _run_as(sec: Section) -> RunAs | None:
    user = sec.get("user", NAME_OR_INT)
    group = sec.get("group", NAME_OR_INT)
    if user is None:
        if group is not None:
            sec.report.error(sec.at("group"), 'needs "user": the group is that of the user the app runs as')
        return None
    if os.geteuid() != 0:
        sec.report.error(sec.at("user"), f"needs Patrol to run as root (it runs as uid {os.geteuid()}): only "
                         "root can start a program as another user")
        return None
    entry = _password_entry(user)
    if entry is None:
        sec.report.error(sec.at("user"), f"unknown user {show(user)} (not in the password database)")
        return None
    gid = entry.pw_gid
    if group is not None:
        found = _group_id(group)
        if found is None:
            sec.report.error(sec.at("group"), f"unknown group {show(group)} (not in the group database)")
            return None
        gid = found
    try:
        groups = os.getgrouplist(entry.pw_name, gid)
    except OSError:
        groups = [gid]
    ordered = tuple(dict.fromkeys([gid, *groups]))  # the primary group first, no repeats
    return RunAs(entry.pw_name, entry.pw_uid, gid, ordered, entry.pw_dir, entry.pw_shell)


def _password_entry(user: int | str) -> pwd.struct_passwd | None:
    """A user by name, or by number (also written as text, as ``chown`` reads it)."""
    try:
        if isinstance(user, str):
            try:
                return pwd.getpwnam(user)
            except KeyError:
                if not user.isdigit():
                    return None
                user = int(user)
        return pwd.getpwuid(user)
    except (KeyError, OverflowError, ValueError):
        return None


def _group_id(group: int | str) -> int | None:
    try:
        if isinstance(group, str):
            try:
                return grp.getgrnam(group).gr_gid
            except KeyError:
                if not group.isdigit():
                    return None
                group = int(group)
        return grp.getgrgid(group).gr_gid
    except (KeyError, OverflowError, ValueError):
        return None


def _umask(sec: Section) -> int | None:
    value = sec.get("umask", STRING)
    if value is None:
        return None
    if not _UMASK.fullmatch(value):
        sec.report.error(sec.at("umask"), f'must be an octal string such as "027", at most "0777" (got {show(value)})')
        return None
    return int(value, 8)


def _nice(sec: Section) -> int | None:
    value = sec.get("nice", INT)
    if value is None:
        return None
    low, high = NICE_RANGE
    if not low <= value <= high:
        sec.report.error(sec.at("nice"), f"must be between {low} and {high} (got {value})")
        return None
    return int(value)


def _limits(sec: Section) -> MappingProxyType[str, tuple[int, int]]:
    table = sec.get("limits", OBJECT, {})
    limits: dict[str, tuple[int, int]] = {}
    for name, value in table.items():
        path = child(sec.at("limits"), name)
        if name.lower() not in LIMIT_NAMES:
            sec.report.error(path, f"unknown resource limit (valid: {', '.join(LIMIT_NAMES)})")
            continue
        pair = _limit_pair(sec, path, value)
        if pair is not None:
            limits[name.lower()] = pair
    return frozen_mapping(limits)


def _limit_pair(sec: Section, path: str, value: Any) -> tuple[int, int] | None:
    """A number or ``"unlimited"`` sets soft and hard; ``[soft, hard]`` each."""
    if isinstance(value, list):
        if len(value) != 2:
            sec.report.error(path, f'must be a number, "unlimited" or [soft, hard] (got {len(value)} values)')
            return None
        soft, hard = (_limit_value(sec, child(path, i), v) for i, v in enumerate(value))
        if soft is None or hard is None:
            return None
        if hard != UNLIMITED and (soft == UNLIMITED or soft > hard):
            sec.report.error(path, f"the soft limit must not be above the hard limit (got {show(value)})")
            return None
        return soft, hard
    single = _limit_value(sec, path, value, pair_hint=True)
    return None if single is None else (single, single)


def _limit_value(sec: Section, path: str, value: Any, pair_hint: bool = False) -> int | None:
    if value == "unlimited":
        return UNLIMITED
    if is_int(value) and 0 <= value <= LIMIT_MAX:
        return int(value)
    also = ', or [soft, hard]' if pair_hint else ""
    sec.report.error(path, f'must be a number from 0 to {LIMIT_MAX} or "unlimited"{also} {got(value)}')
    return None


def _env_file(sec: Section) -> str:
    value = sec.get("env-file", STRING, "")
    if value and (problem := path_problem(value)):
        sec.report.error(sec.at("env-file"), problem)
        return ""
    return value
