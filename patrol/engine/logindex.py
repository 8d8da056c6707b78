"""The log directories of a config, indexed once per config (start and each reload).

Each start, rotation and end of an instance asks which limits its log directory has.
Working that out from every app's config each time made starting N apps cost N x N
(at 5,000 apps, most of the start-up time); the index answers in O(1). Apps that share
a log directory share its limits: the shortest age set among them, and the smallest
budget set among them (``log-max-total-bytes``: the operator's word for the directory);
when none sets one, each app brings its default share (20 x its ``log-max-bytes``) and
the directory's budget is their sum. (One app's default for a whole shared directory
was smaller than what its apps' current files may reach: from 11 apps on, every ended
instance's file and every rotated generation was deleted as soon as it was closed.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, TypeVar

if TYPE_CHECKING:
    from patrol.plugin.model import AppConfig


@dataclass
class Directory:
    """One log directory and what applies to it."""

    root: str
    max_age_days: float = 0.0  # log-max-age-days: 0 = no limit
    apps: set[str] = field(default_factory=set)  # (a list was N x N to fill at 5,000 apps)
    budget_set: int = 0  # the smallest log-max-total-bytes set by an app (0: none set)
    shares: int = 0  # the default budgets of the apps that set none, added up

    @property
    def budget(self) -> int:
        """log-max-total-bytes for the directory: 0 = no limit."""
        return self.budget_set or self.shares

    @property
    def limited(self) -> bool:
        return bool(self.budget or self.max_age_days)


class LogIndex:
    """root -> :class:`Directory`, and app id -> its root."""

    def __init__(self, configs: Iterable["AppConfig"] = ()) -> None:
        self.directories: dict[str, Directory] = {}
        self.roots: dict[str, str] = {}
        for config in configs:
            self.add(config)

    def add(self, config: "AppConfig") -> None:
        """One more app (a new copy of a set of instances, between reloads)."""
        root = config.log_root
        self.roots[config.id] = root
        entry = self.directories.setdefault(root, Directory(root))
        if config.id in entry.apps:
            return
        entry.apps.add(config.id)
        if config.log_max_total_bytes_set:
            entry.budget_set = _smallest(entry.budget_set, config.log_max_total_bytes)
        else:  # (none when its log-max-bytes is 0: its files are not rotated)
            entry.shares += config.log_max_total_bytes
        entry.max_age_days = _smallest(entry.max_age_days, config.log_max_age_days)

    def get(self, root: str) -> Directory:
        return self.directories.get(root) or Directory(root)

    def shared(self, root: str) -> bool:
        return len(self.get(root).apps) > 1

    def link_name(self, app_id: str, stream: str) -> str:
        """The stable name of the app's current log of ``stream``, in its log directory:
        ``current.stdout.log``, or ``current.<id>.stdout.log`` in a shared directory."""
        root = self.roots.get(app_id, "")
        return f"current.{app_id}.{stream}.log" if self.shared(root) else f"current.{stream}.log"


Limit = TypeVar("Limit", int, float)


def _smallest(a: Limit, b: Limit) -> Limit:
    """The smallest limit that is set (0 = none)."""
    if not a:
        return b
    if not b:
        return a
    return min(a, b)
