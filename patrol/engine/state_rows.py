"""How an app or service becomes rows of the state file (:mod:`patrol.engine.state_file`).

Kept apart from the store: encoding is pure (no database, no file), and a group commit
streams it in chunks so a start burst never holds every row in memory at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from itertools import islice
from typing import Any, Iterable, Iterator

from patrol.engine.item_state import HistoryRecord, LogFiles, State

#: State fields kept in the item row (the rest is derived or per-process).
FIELDS = (
    "cas", "keyvalue", "instance_id", "started", "lastseen", "disabled", "restart", "run_once",
    "run_once_consumed", "pid", "exit_code",
)
#: Items a group commit encodes at once: enough for ``executemany`` to pay, few enough that
#: a burst's rows are freed before the next chunk is made. (pymalloc gives an arena back
#: only when every pool in it is empty: the transients of one burst-wide encoding were
#: scattered over arenas that later allocations kept alive, ~1 KB of RSS per app for good.)
CHUNK = 64
#: the fields of a log-file record and of a history record, in their declared order (what
#: ``asdict`` and ``fields`` gave, looked up once: per item they were half its encoding)
LOG_FIELDS = tuple(f.name for f in fields(LogFiles))
HISTORY_FIELDS = tuple(f.name for f in fields(HistoryRecord))

Key = tuple[str, str]
#: one history row: group, id, sequence number, the record as JSON
HistoryRow = tuple[str, str, int, str]


@dataclass
class Item:
    """One app or service as the state file keeps it."""

    group: str
    id: str
    state: State
    extra: dict[str, Any]

    @property
    def key(self) -> Key:
        return (self.group, self.id)


#: an item, its row as JSON, and its history rows not yet written
Encoded = tuple[Item, str, list[HistoryRow]]


def chunks(items: Iterable[Item], size: int = CHUNK) -> Iterator[list[Item]]:
    """``items`` in lists of at most ``size``, made one at a time (``items`` may be lazy)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def item_row(item: Item, reserve: int) -> str:
    """The item's row as JSON; ``reserve`` is the CAS the next Patrol starts at after a crash."""
    state = item.state
    row = {name: getattr(state, name) for name in FIELDS}
    if type(state.keyvalue) is not dict:  # the shared empty mapping (no key-values): not JSON as it is
        row["keyvalue"] = dict(state.keyvalue)
    logs = state.started_log  # (plain strings and a bool: a shallow copy is asdict's deep one)
    row["started_log"] = {name: getattr(logs, name) for name in LOG_FIELDS} if logs else None
    row.update(item.extra)
    row["cas-reserve"] = reserve
    return json.dumps(row)


def history_rows(item: Item, saved: int) -> list[HistoryRow]:
    """The item's history records after the first ``saved`` (those on disk), as rows."""
    state = item.state
    new = min(state.history_total - saved, len(state.history))
    if new <= 0:
        return []
    first = state.history_total - new + 1
    records = list(state.history)[-new:]
    return [(item.group, item.id, first + i, json.dumps(_fields(r))) for i, r in enumerate(records)]


def _fields(record: HistoryRecord) -> dict[str, Any]:
    """A record's fields, shallow: json.dumps copies them anyway (asdict deep-copies)."""
    names = HISTORY_FIELDS if type(record) is HistoryRecord else tuple(f.name for f in fields(record))
    return {name: getattr(record, name) for name in names}
