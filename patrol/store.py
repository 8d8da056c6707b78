"""Persistent state: what must survive a restart (or a SIGKILL) of Patrol.

An embedded SQLite database (stdlib ``sqlite3``) in WAL mode. Every change session of an
app's or service's state (one API request, one start, one close) is one transaction,
committed before the change is answered, so a response the client got is on disk even if
Patrol is killed right after. ``synchronous=NORMAL`` is durable against a crash of the
process (not of the machine), which is the failure this is for.

Per item it keeps the CAS counter, key/values, toggles, and the live instance (id, pid,
the pid's process start time for adoption), and the history records, trimmed to the
configured limit. A second Patrol on the same file is refused (an ``flock`` on a lock
file beside the database, which the kernel releases when the holder dies).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from dataclasses import asdict, fields
from typing import Any

from .state import HistoryRecord, LogFiles, State

SCHEMA = """
CREATE TABLE IF NOT EXISTS item (
    grp TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, history_total INTEGER NOT NULL,
    PRIMARY KEY (grp, id)
);
CREATE TABLE IF NOT EXISTS history (
    grp TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (grp, id, seq)
);
"""
#: The layout above, recorded in SQLite's ``user_version``. Patrol 0.1 left it at 0 with
#: this same layout, so 0 is read as 1. Bump it (and migrate older files where they are
#: opened) whenever the tables change in a way an older Patrol would misread.
SCHEMA_VERSION = 1
#: State fields kept in the item row (the rest is derived or per-process).
FIELDS = (
    "cas", "keyvalue", "instance_id", "started", "lastseen", "disabled", "restart", "run_once",
    "run_once_consumed", "pid", "exit_code",
)


class StateFileLocked(Exception):
    """Another Patrol already uses this state file."""


class StateFileTooNew(Exception):
    """The state file was written by a newer Patrol, in a layout this one does not know."""


class Store:
    """One SQLite file holding the state of every app and service."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock_fd = -1
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._lock()
            # key/values of items with a secret live here: readable by Patrol's user only
            # (SQLite creates its -wal and -shm files with the database's mode)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        # a short busy timeout: a write waits on the event loop, so never for long
        self.db = sqlite3.connect(path, timeout=0.1, isolation_level=None, check_same_thread=False)
        found = self._check_version()  # before anything writes to the file
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        if found < SCHEMA_VERSION:
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._saved_history: dict[tuple[str, str], int] = {}

    def _check_version(self) -> int:
        """Refuse a file from a newer Patrol instead of misreading or rewriting it."""
        found: int = self.db.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            self.close()
            raise StateFileTooNew(
                f"state file {self.path} has layout version {found}, written by a newer Patrol; "
                f"this one reads up to version {SCHEMA_VERSION}. Run the newer Patrol, or give "
                "this config another state-file (the file was left unchanged)"
            )
        return found

    def _lock(self) -> None:
        lock_path = self.path + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateFileLocked(
                f"state file {self.path} is in use by another Patrol (pid {holder}); "
                "stop it first, or give this config its own state-file"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def close(self) -> None:
        self.db.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- writing ---------------------------------------------------------------------

    def save(self, group: str, item_id: str, state: State, extra: dict[str, Any] | None = None) -> None:
        """Write one item's state and its new history records in one transaction."""
        row = {name: getattr(state, name) for name in FIELDS}
        row["started_log"] = asdict(state.started_log) if state.started_log else None
        row.update(extra or {})
        key = (group, item_id)
        saved = self._saved_history.get(key, 0)
        new = min(state.history_total - saved, len(state.history))
        with self.db:  # BEGIN ... COMMIT
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT OR REPLACE INTO item VALUES (?, ?, ?, ?)",
                (group, item_id, json.dumps(row), state.history_total),
            )
            if new > 0:
                records = list(state.history)[-new:]
                first = state.history_total - new + 1
                self.db.executemany(
                    "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?)",
                    [(group, item_id, first + i, json.dumps(_fields(r))) for i, r in enumerate(records)],
                )
                self.db.execute(
                    "DELETE FROM history WHERE grp = ? AND id = ? AND seq <= ?",
                    (group, item_id, state.history_total - state.history_limit),
                )
        self._saved_history[key] = state.history_total

    def forget(self, group: str, item_id: str) -> None:
        """An item was removed from the config: drop what was kept of it."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM item WHERE grp = ? AND id = ?", (group, item_id))
            self.db.execute("DELETE FROM history WHERE grp = ? AND id = ?", (group, item_id))
        self._saved_history.pop((group, item_id), None)

    # -- reading ---------------------------------------------------------------------

    def load(self, group: str, item_id: str, state: State) -> dict[str, Any] | None:
        """Restore ``state`` in place from the file; returns the row (with extras) or None."""
        found = self.db.execute("SELECT state, history_total FROM item WHERE grp = ? AND id = ?",
                                (group, item_id)).fetchone()
        if found is None:
            return None
        row, total = json.loads(found[0]), found[1]
        for name in FIELDS:
            if name in row:
                setattr(state, name, row[name])
        log = row.get("started_log")
        state.started_log = LogFiles(**log) if log else None
        records = self.db.execute(
            "SELECT record FROM history WHERE grp = ? AND id = ? ORDER BY seq DESC LIMIT ?",
            (group, item_id, state.history_limit),
        ).fetchall()
        state.history.clear()
        state.history.extend(HistoryRecord(**json.loads(r[0])) for r in reversed(records))
        state.history_total = total
        self._saved_history[(group, item_id)] = total
        return row

    def items(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self.db.execute("SELECT grp, id FROM item")]  # type: ignore[misc]


def _fields(record: HistoryRecord) -> dict[str, Any]:
    """A record's fields, shallow: json.dumps copies them anyway (asdict deep-copies)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


def default_path(config_source: str | None) -> str:
    """Beside the config: ``/etc/patrol/config.json`` -> ``/etc/patrol/config.state.db``."""
    if not config_source:
        return ":memory:"
    base, _ = os.path.splitext(os.path.abspath(config_source))
    return base + ".state.db"
