"""Persistent state: what must survive a restart (or a SIGKILL) of Patrol.

An embedded SQLite database (stdlib ``sqlite3``) in WAL mode with ``synchronous=NORMAL``
(durable against a crash of the process, not of the machine, which is the failure this
is for). When it is written is the supervisor's business (:mod:`patrol.engine.state_writer`):
this module writes any number of items in one transaction, rebuilds the file from
memory when it was deleted or replaced, and guards it against a second Patrol.

Per item it keeps the CAS counter, key/values, toggles, the live instance (id, pid, the
pid's process start time and process groups, for adoption) and the history records,
trimmed to the configured limit.

CAS never goes down, not even after a crash that lost the last changes that only moved
``lastseen`` (those are flushed periodically, not before they are answered). Every row
carries a *reserve*, ``cas + CAS_RESERVE``, and the writer never shows a CAS at or above
the reserve on disk without committing first. A Patrol that stops gracefully marks the
file clean; after any other end the next Patrol starts each item's CAS at its reserve,
which is above every CAS the previous one may have shown.

A second Patrol on the same file is refused (:mod:`patrol.engine.state_lock`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from typing import Any, Iterable

from patrol.engine.item_state import HistoryRecord, LogFiles, State
from patrol.engine.state_lock import REBUILD_INFIX, StateLock, identity, lock_path, unlink
from patrol.engine.state_rows import FIELDS, Encoded, Item, Key, chunks, history_rows, item_row

SCHEMA = """
CREATE TABLE IF NOT EXISTS item (
    grp TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, history_total INTEGER NOT NULL,
    PRIMARY KEY (grp, id)
);
CREATE TABLE IF NOT EXISTS history (
    grp TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (grp, id, seq)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: The layout above, recorded in SQLite's ``user_version``. Patrol 0.1 left it at 0 with
#: this same layout, so 0 is read as 1. Bump it (and migrate older files where they are
#: opened) whenever the tables change in a way an older Patrol would misread. (The
#: ``meta`` table and the rows' ``cas-reserve`` are not such a change: 0.1 ignores both,
#: and a row it rewrites merely loses its reserve, which then is not applied.)
SCHEMA_VERSION = 1
#: How far above the written CAS the next Patrol starts after a crash: more than the
#: CAS changes a ping flood can make between two flushes, far less than the CAS range.
CAS_RESERVE = 10_000
#: SQLite's page cache for the state file, in KiB. The default 2 MiB held the whole file up to
#: ~1,700 items (~1.2 KB each); the OS's cache serves the pages a write needs beyond it. A
#: commit touches a few pages (the root, the leaves of the rows it writes): 16 pages hold
#: those, and each KiB here is resident for good once the file outgrows it (at 500 apps,
#: 256 KiB read 0.2 MiB more RSS than 64, with cold start and respawn unchanged).
PAGE_CACHE_KIB = 64


class StateFileTooNew(Exception):
    """The state file was written by a newer Patrol, in a layout this one does not know."""


class Store:
    """One SQLite file holding the state of every app and service."""

    def __init__(self, path: str) -> None:
        # absolute: the file's identity is checked by path for as long as Patrol runs
        self.path = path if path == ":memory:" else os.path.abspath(path)
        self.lock: StateLock | None = None  # a second Patrol on this file is refused
        self._ident: tuple[int, int] | None = None  # (device, inode) of the file written to
        self._wal_ident: tuple[int, int] | None = None
        self._saved_history: dict[Key, int] = {}
        self._reserve: dict[Key, int] = {}
        self._running_marked = False  # "not closed cleanly" is on disk
        #: where the last rebuild kept a file someone had renamed over the state file
        self.kept_aside: str | None = None
        if path != ":memory:":
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.lock = StateLock(self.path)
            self._remove_rebuild_leftovers()
            # key/values of items with a secret live here: readable by Patrol's user only
            # (SQLite creates its -wal and -shm files with the database's mode)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        self.db = self._connect()
        clean = self.db.execute("SELECT value FROM meta WHERE key = 'clean'").fetchone()
        #: the previous Patrol did not stop gracefully: start every CAS at its reserve
        self.crashed = clean is not None and clean[0] != "1"

    def _connect(self) -> sqlite3.Connection:
        # a short busy timeout: a write waits on the event loop, so never for long
        db = sqlite3.connect(self.path, timeout=0.1, isolation_level=None, check_same_thread=False)
        found = self._check_version(db)  # before anything writes to the file
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        db.executescript(SCHEMA)
        if found < SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if self.path != ":memory:":
            self._ident = identity(self.path)
            self._wal_ident = identity(self.path + "-wal")
        return db

    def _check_version(self, db: sqlite3.Connection) -> int:
        """Refuse a file from a newer Patrol instead of misreading or rewriting it."""
        found: int = db.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            db.close()
            self._unlock()
            raise StateFileTooNew(
                f"state file {self.path} has layout version {found}, written by a newer Patrol; "
                f"this one reads up to version {SCHEMA_VERSION}. Run the newer Patrol, or give "
                "this config another state-file (the file was left unchanged)"
            )
        return found

    def close(self) -> None:
        self.db.close()
        self._unlock()

    def _unlock(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def lock_path(self) -> str:
        return lock_path(self.path)

    def check_lock(self) -> bool:
        """Put the lock file back if it was deleted or replaced; True if it was."""
        return self.lock.check() if self.lock is not None else False

    # -- writing ---------------------------------------------------------------------

    def save_all(self, items: Iterable[Item]) -> dict[Key, Exception]:
        """Write every item in one transaction (a group commit).

        Rows are encoded and written :data:`CHUNK` items at a time: a start burst's
        thousands of rows are never all in memory at once (pymalloc keeps an arena while
        any of its pools holds a block, so one burst's transients stayed in RSS for good).
        Items that cannot be encoded are left out and returned with their error: one bad
        item must not keep the others off the disk. A database error raises, and then
        nothing of this call was written (nor marked written).
        """
        failed: dict[Key, Exception] = {}
        written: list[tuple[Key, State]] = []
        with self.db:  # BEGIN ... COMMIT, or ROLLBACK on an error
            self.db.execute("BEGIN")
            for chunk in chunks(items):
                encoded, bad = self._encode(chunk, full=False)
                failed.update(bad)
                if encoded:
                    self._write(self.db, encoded, full=False)
                    written.extend((item.key, item.state) for item, _, _ in encoded)
        self._written(written)
        return failed

    def _encode(self, items: Iterable[Item], *, full: bool) -> tuple[list[Encoded], dict[Key, Exception]]:
        encoded: list[Encoded] = []
        failed: dict[Key, Exception] = {}
        for item in items:
            try:
                saved = 0 if full else self._saved_history.get(item.key, 0)
                encoded.append((item, item_row(item, item.state.cas + CAS_RESERVE), history_rows(item, saved)))
            except (TypeError, ValueError, RecursionError) as exc:
                failed[item.key] = exc
        return encoded, failed

    def _write(self, db: sqlite3.Connection, encoded: list[Encoded], *, full: bool) -> None:
        if not self._running_marked or full:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('clean', '0')")
        db.executemany("INSERT OR REPLACE INTO item VALUES (?, ?, ?, ?)",
                       [(item.group, item.id, row, item.state.history_total) for item, row, _ in encoded])
        for item, _, history in encoded:
            if full:
                db.execute("DELETE FROM history WHERE grp = ? AND id = ?", item.key)
            if history:
                db.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?)", history)
                db.execute("DELETE FROM history WHERE grp = ? AND id = ? AND seq <= ?",
                           (*item.key, item.state.history_total - item.state.history_limit))

    def _written(self, written: list[tuple[Key, State]]) -> None:
        """After the commit only: what is marked here is trusted to be on disk."""
        self._running_marked = True
        for key, state in written:  # one key tuple kept per item, not one per table
            self._saved_history[key] = state.history_total
            self._reserve[key] = state.cas + CAS_RESERVE

    def covers(self, group: str, item_id: str, cas: int) -> bool:
        """Is ``cas`` below the reserve on disk (so it may be shown before it is written)?"""
        return cas < self._reserve.get((group, item_id), 0)

    def mark_clean(self) -> None:
        """A graceful stop, after the last write: the next Patrol may trust each CAS as is."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('clean', '1')")
        self._running_marked = False

    def forget(self, group: str, item_id: str) -> None:
        """An item was removed from the config: drop what was kept of it."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM item WHERE grp = ? AND id = ?", (group, item_id))
            self.db.execute("DELETE FROM history WHERE grp = ? AND id = ?", (group, item_id))
        self._saved_history.pop((group, item_id), None)
        self._reserve.pop((group, item_id), None)

    # -- a deleted or replaced file --------------------------------------------------

    def check(self) -> str | None:
        """Why the file at the path is no longer the one written to, or None if it is.

        Two ``stat`` calls, cheap enough for every write. Deleted or replaced (a rename
        over it), the writes would go to an inode nobody will ever read again.
        """
        if self.path == ":memory:":
            return None
        try:
            found = identity(self.path)
            wal = identity(self.path + "-wal")
        except OSError:
            return None  # cannot tell (e.g. the directory is not searchable): the write will say
        if found is None:
            return "deleted"
        if found != self._ident:
            return "replaced"
        if self._wal_ident is None:
            self._wal_ident = wal
        elif wal != self._wal_ident:
            return "its -wal file was deleted" if wal is None else "its -wal file was replaced"
        return None

    def rebuild(self, items: Iterable[Item]) -> bool:
        """Write a new state file from what the old one held and ``items``; rename it in.

        Everything is read through the connection that is still open on the old file
        (SQLite's backup, so rows of items not in the config survive too), every item
        is then written in full from memory, and the result replaces the path in one
        rename. The old connection's leftover ``-wal`` and ``-shm`` are removed before:
        SQLite would apply that WAL to the new file, which would corrupt it. Returns
        whether the old content could be copied.
        """
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=os.path.basename(self.path) + REBUILD_INFIX, dir=directory)
        os.close(fd)  # mkstemp: mode 0600
        items = list(items)
        copied = True
        try:
            new = sqlite3.connect(temporary, isolation_level=None)
            try:
                try:
                    self.db.backup(new)
                except sqlite3.Error:
                    copied = False  # the old file cannot be read: memory is all there is
                new.executescript(SCHEMA)
                new.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                encoded, failed = self._encode(items, full=True)
                with new:
                    new.execute("BEGIN")
                    self._write(new, encoded, full=True)
                new.execute("PRAGMA journal_mode=DELETE")  # no -wal beside the temporary name
            finally:
                new.close()
        except BaseException:
            unlink(temporary)
            raise
        old = self.db
        for leftover in (self.path + "-wal", self.path + "-shm"):
            unlink(leftover)
        self.kept_aside = self._keep_aside()
        try:
            os.replace(temporary, self.path)  # fails if, say, a directory now has the name
        except OSError:
            unlink(temporary)
            raise
        try:
            old.close()  # writes only to the old, unlinked files
        except sqlite3.Error:
            pass
        self.db = self._connect()
        self._running_marked = False
        self._written([(item.key, item.state) for item, _, _ in encoded])
        for key in failed:
            self._saved_history.pop(key, None)
        return copied

    def _keep_aside(self) -> str | None:
        """A file renamed over the state file may be someone's backup: keep it under
        another name (a hard link, so the path is never without a file) for its owner."""
        if identity(self.path) is None:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for n in range(1, 100):
            aside = f"{self.path}.replaced-{stamp}-{n}"
            try:
                os.link(self.path, aside)
            except FileExistsError:
                continue
            except OSError:
                return None
            return aside
        return None

    def _remove_rebuild_leftovers(self) -> None:
        """Temporary files of a rebuild that a crash interrupted (ours: we hold the lock)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        prefixes = (os.path.basename(self.path) + REBUILD_INFIX, os.path.basename(self.lock_path) + REBUILD_INFIX)
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            if name.startswith(prefixes):
                unlink(os.path.join(directory, name))

    # -- reading ---------------------------------------------------------------------

    def load(self, group: str, item_id: str, state: State) -> dict[str, Any] | None:
        """Restore ``state`` in place from the file; returns the row (with extras) or None."""
        found = self.db.execute("SELECT state, history_total FROM item WHERE grp = ? AND id = ?",
                                (group, item_id)).fetchone()
        if found is None:
            return None
        row, total = json.loads(found[0]), found[1]
        key = (group, item_id)  # one tuple kept for both tables
        for name in FIELDS:
            if name in row:
                setattr(state, name, row[name])
        reserve = row.get("cas-reserve")
        if isinstance(reserve, int) and not isinstance(reserve, bool):
            if self.crashed:
                state.cas = max(state.cas, reserve)  # above any CAS the crashed Patrol showed
            self._reserve[key] = reserve
        log = row.get("started_log")
        state.started_log = LogFiles(**log) if log else None
        records = self.db.execute(
            "SELECT record FROM history WHERE grp = ? AND id = ? ORDER BY seq DESC LIMIT ?",
            (group, item_id, state.history_limit),
        ).fetchall()
        state.set_history(HistoryRecord(**json.loads(r[0])) for r in reversed(records))
        state.history_total = total
        self._saved_history[key] = total
        return row

    def items(self) -> list[tuple[str, str]]:
        return [(grp, item_id) for grp, item_id in self.db.execute("SELECT grp, id FROM item")]


def default_path(config_source: str | None) -> str:
    """Beside the config: ``/etc/patrol/config.json`` -> ``/etc/patrol/config.state.db``."""
    if not config_source:
        return ":memory:"
    base, _ = os.path.splitext(os.path.abspath(config_source))
    return base + ".state.db"
