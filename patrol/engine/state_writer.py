"""When the state file is written: group commits, the lastseen flush, faults, a lost file.

Rules, in order of importance:

* A change a client is told about is on disk before the answer leaves: :meth:`commit`
  (called by the API before it answers) writes everything pending in one transaction.
* Changes nobody waits for (a spawn, an exit, the closes of a shutdown) are written
  together once per loop iteration (``call_soon``): one commit for a whole burst.
* A change that only moved ``lastseen`` (a ping, a liveness check) waits for the periodic
  flush, at most :data:`FLUSH_EVERY` seconds, armed only while such changes wait: an
  idle Patrol is never woken. A crash loses at most that much of ``lastseen``, never a
  toggle, a key/value, an instance or history. Its CAS is covered by the reserve the
  store keeps above it (see :mod:`patrol.engine.state_file`); a change that would reach the
  reserve is written at once.
* A file that refuses writes (locked, read-only, full) never stops supervision: the
  changes stay in memory, the fault is logged and shown (``/status/``, API answers,
  the GUI), and the write is retried every :data:`RETRY_EVERY` seconds.
* A file deleted or replaced while Patrol runs is noticed at the next write, at each
  tick, and at once through inotify where it works, and rebuilt from memory.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Callable, Iterable, Protocol

import structlog

from patrol.engine.dirwatch import DirWatch
from patrol.engine.item_state import State
from patrol.engine.state_file import Store
from patrol.engine.state_rows import Item, Key

log = structlog.get_logger("patrol.statefile")

#: the longest a change that only moved ``lastseen`` waits for the disk
FLUSH_EVERY = 1.0
#: how often a state file that refused a write is tried again
RETRY_EVERY = 1.0


class Persistent(Protocol):
    """What the writer needs of an app or service runner."""

    group: str
    id: str
    state: Any

    def persist_extra(self) -> dict[str, Any]: ...


class Persist:
    """An item's ``State.on_change``: its changes go to the writer while that state is
    still the item's (a reload may hand the runner another one). One small object per
    item where ``partial(supervisor._persist, runner)`` was four (the partial, its tuple
    and keyword dict, the bound method)."""

    __slots__ = ("writer", "runner")

    def __init__(self, writer: "StateWriter", runner: Persistent) -> None:
        self.writer, self.runner = writer, runner

    def __call__(self, state: State, durable: bool) -> None:
        if state is self.runner.state:
            self.writer.changed(self.runner, durable)


class StateWriter:
    """Decides when the state of the supervisor's items reaches the state file."""

    def __init__(self, store: Store, runners: Callable[[], Iterable[Persistent]],
                 wall: Callable[[], float]) -> None:
        self.store = store
        self._runners = runners  # every current item: what a rebuilt file must hold
        self.wall = wall
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dirty: dict[Key, Persistent] = {}
        self._durable = False  # a change in ``dirty`` must not wait for the periodic flush
        self._soon: asyncio.Handle | None = None  # the group commit of this loop iteration
        self._timer: asyncio.TimerHandle | None = None  # the periodic flush, or the retry
        self._check_soon: asyncio.Handle | None = None
        self._watch: DirWatch | None = None
        #: why the state file refuses writes (None while it takes them) and since when
        self.error: str | None = None
        self.error_since: float | None = None
        #: failed writes since Patrol started (the retries of one fault included)
        self.failures = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop runs: what changed before (every item, when the supervisor was made)
        goes into the first group commit."""
        self.loop = loop
        self._start_watch()
        if self.dirty:
            self._durable = True
            self._soon = loop.call_soon(self.flush)

    def _start_watch(self) -> None:
        if self.loop is None or self.store.path == ":memory:" or (self._watch and self._watch.active):
            return
        path = os.path.abspath(self.store.path)
        base = os.path.basename(path)
        self._watch = DirWatch(self.loop, os.path.dirname(path), {base, base + "-wal", base + ".lock"},
                               self._watched)
        if not self._watch.start():
            log.info("no inotify: a deleted state file is noticed at the next write or tick", file=path)

    def close(self) -> None:
        """A graceful stop: the last write, then the mark that every CAS on disk is exact."""
        if self._watch is not None:
            self._watch.close()
        for handle in (self._soon, self._timer, self._check_soon):
            if handle is not None:
                handle.cancel()
        self._soon = self._timer = self._check_soon = None
        self.loop = None  # no more timers: what fails now is logged, not retried
        self.flush()
        if self.dirty or self.error is not None:
            return  # not clean: the next Patrol starts each CAS at its reserve
        try:
            self.store.mark_clean()
        except Exception as exc:  # noqa: BLE001 - the next start is merely more careful
            log.warning("cannot mark the state file clean", file=self.store.path, error=str(exc))

    # -- changes ---------------------------------------------------------------------

    def changed(self, runner: Persistent, durable: bool) -> None:
        """An item's state changed (``durable``: more than ``lastseen``)."""
        self.dirty[(runner.group, runner.id)] = runner
        if durable:
            self._durable = True
        elif self.store.covers(runner.group, runner.id, runner.state.cas):
            if self._timer is None and self._soon is None and self.loop is not None:
                self._timer = self.loop.call_later(FLUSH_EVERY, self.flush)
            return
        if self.loop is None or self.error is not None:
            return  # written by start(), or by the retry timer
        if durable:
            if self._soon is None:
                self._soon = self.loop.call_soon(self.flush)
        else:
            self.flush()  # a CAS the reserve on disk does not cover: written before anyone sees it

    def commit(self) -> bool:
        """Before an answer: write what must not wait; False if only memory has it."""
        if self._durable and self.error is None:
            self.flush()
        return self.error is None

    def forget(self, group: str, item_id: str) -> None:
        """An item left the config: drop it from the file (a stale row would be harmless)."""
        self.dirty.pop((group, item_id), None)
        try:
            self.store.forget(group, item_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("cannot forget a removed item in the state file", id=item_id, error=str(exc))

    # -- writing ---------------------------------------------------------------------

    def flush(self) -> None:
        """Write every changed item in one transaction; rebuild the file if it was lost."""
        for handle in (self._soon, self._timer):
            if handle is not None:
                handle.cancel()
        self._soon = self._timer = None
        lost = self.store.check()
        if lost is not None:
            self._rebuild(lost)
            return
        if not self.dirty:
            self._durable = False
            return
        # the items are made as the store encodes them, a chunk at a time: a start burst's
        # every item (and its extras) is never in memory at once
        keys = list(self.dirty)
        try:
            failed = self.store.save_all(self._item(self.dirty[key]) for key in keys)
        except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError, ...
            self._failed(exc)
            return
        for key in keys:
            if key not in failed:
                del self.dirty[key]
        if not self.dirty:
            self.dirty.clear()  # frees the table a start burst grew (deleted entries leave it as large)
        if failed:
            key, error = next(iter(failed.items()))
            self._failed(error, item=f"{key[0]} {key[1]}")
            return
        self._durable = False
        self._recovered()

    def _item(self, runner: Persistent) -> Item:
        return Item(runner.group, runner.id, runner.state, runner.persist_extra())

    def _failed(self, exc: BaseException, **context: Any) -> None:
        self.failures += 1
        if self.error is None:
            self.error_since = self.wall()
            log.error("cannot write the state file; changes are kept in memory",
                      file=self.store.path, error=str(exc) or type(exc).__name__, items=len(self.dirty), **context)
        # shown to API clients: the reason, without the paths an OSError names (the log has them)
        self.error = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__
        if self.loop is not None and self._timer is None:
            self._timer = self.loop.call_later(RETRY_EVERY, self.flush)

    def _recovered(self) -> None:
        if self.error is not None:
            log.info("the state file is writable again", file=self.store.path)
            self.error = self.error_since = None

    # -- a deleted or replaced file --------------------------------------------------

    def _watched(self) -> None:
        """inotify saw one of the files go: look once this loop iteration is done."""
        if self._check_soon is None and self.loop is not None:
            self._check_soon = self.loop.call_soon(self.check)

    def check(self) -> None:
        """Tick and inotify: is the file (and the lock file) still the one written to?"""
        self._check_soon = None
        lost = self.store.check()
        if lost is not None:
            self._rebuild(lost)  # checks the lock file too
        else:
            self._check_lock()
        self._start_watch()  # the directory itself may have gone and come back

    def _check_lock(self) -> None:
        try:
            if self.store.check_lock():
                log.warning("the state file's lock file was deleted or replaced; recreated it",
                            file=self.store.lock_path)
        except OSError as exc:
            log.error("cannot recreate the state file's lock file", file=self.store.lock_path, error=str(exc))

    def _rebuild(self, why: str) -> None:
        runners = list(self._runners())
        try:
            copied = self.store.rebuild(self._item(runner) for runner in runners)
        except Exception as exc:  # noqa: BLE001 - e.g. the directory cannot be written
            self._failed(exc, lost=why)
            return
        log.warning("state file recreated", file=self.store.path, why=why, items=len(runners),
                    old_content_copied=copied, foreign_file_kept_as=self.store.kept_aside)
        self.dirty.clear()
        self._durable = False
        self._recovered()
        self._check_lock()  # gone with the directory, perhaps
        self._start_watch()

    # -- showing the fault -----------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``{"ok": true}``, or ``ok: false`` with the error and since when (wall time)."""
        if self.error is None:
            return {"ok": True}
        return {"ok": False, "error": self.error, "since": self.error_since}
