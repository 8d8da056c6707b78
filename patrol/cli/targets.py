"""Which items a command means: ids, instance sets, globs, ``all``.

* an exact id, found in whichever group has it (``--group`` when both have it);
* the id of a set of instances (items whose ``instance-of`` is that id);
* a glob (``'queue-*'``) over ids and set ids;
* ``all``.

Globs and ``all`` match the groups a command allows for them: apps, for actions and
logs (a system service is only acted on by name or with ``--group service``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from patrol.cli.address import EXIT_REFUSED, ClientError

TABLES = (("app", "apps"), ("service", "service"))


@dataclass(frozen=True)
class Target:
    group: str
    id: str
    entry: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.group, self.id


def all_items(status: dict[str, Any]) -> list[Target]:
    return [Target(group, item_id, entry) for group, key in TABLES
            for item_id, entry in sorted((status.get(key) or {}).items()) if isinstance(entry, dict)]


def find(status: dict[str, Any], group: str, item_id: str) -> dict[str, Any] | None:
    entry = (status.get(dict(TABLES)[group]) or {}).get(item_id)
    return entry if isinstance(entry, dict) else None


def is_pattern(name: str) -> bool:
    return name == "all" or any(c in name for c in "*?[")


def resolve(status: dict[str, Any], names: Sequence[str], group: str | None,
            wide: Iterable[str] = ("app",)) -> list[Target]:
    """The items ``names`` mean, in the order named, each once. ``wide``: the groups a
    glob or ``all`` matches when no ``--group`` is given."""
    items = [t for t in all_items(status) if group in (None, t.group)]
    chosen: dict[tuple[str, str], Target] = {}
    for raw in names:
        name = raw.lower()
        if is_pattern(name):
            pool = [t for t in items if group is not None or t.group in wide]
            found = [t for t in pool if name == "all" or fnmatch.fnmatchcase(t.id, name)
                     or fnmatch.fnmatchcase(str(t.entry.get("instance-of", "")), name)]
        else:
            found = [t for t in items if t.id == name]
            if len({t.group for t in found}) > 1:
                raise ClientError(f"{raw}: there is an app and a service with that id: give --group app or "
                                  "--group service", EXIT_REFUSED)
            if not found:
                found = [t for t in items if t.entry.get("instance-of") == name]
        if not found:
            what = {None: "app or service", "app": "app", "service": "service"}[group]
            raise ClientError(f"unknown {what}: {raw}" if not is_pattern(name) else f"no {what} matches {raw!r}",
                              EXIT_REFUSED)
        for target in found:
            chosen.setdefault(target.key, target)
    return list(chosen.values())
