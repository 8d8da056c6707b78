"""Sets of instances: how many copies each set has, scaling, and actions on a whole set.

An app with ``instances: N`` is a set: its copies ``ID-0`` .. ``ID-(N-1)`` are full
items (runners) of their own, made from the set's definition
(:func:`patrol.config.instances.expand`). What belongs to the set as a whole lives
here:

* **Its size.** ``patrol scale ID N`` (the API's ``instances`` field) changes it at run
  time. The new size is in the state file before the request is answered (a row of
  group ``set``), and survives a restart of Patrol as long as the config still says
  what it said when it was scaled; a config that changes ``instances`` wins (on reload
  or at the next start). Copies beyond the size are stopped and removed highest first;
  missing ones are added. One task per set does it, re-reading the wanted size after
  each step, so a burst of requests ends at the last one.
* **Actions on the set.** A toggle sent to the set's id applies to every copy; a
  restart in ``restart-mode: "rolling"`` (the default) restarts one copy at a time and
  goes on once it runs again and has stayed up ``backoff-reset`` seconds, so never
  more than one copy is down (a copy that does not come back within its stop timeout,
  ``backoff-reset`` and :data:`ROLL_START_TIMEOUT` ends the rolling restart: the other
  copies keep running). ``"parallel"`` restarts them all at once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from patrol.config.instances import make_copy
from patrol.engine.item_state import RESTART, State
from patrol.plugin.model import AppConfig, PatrolConfig
from patrol.plugin.states import ItemState

if TYPE_CHECKING:
    from patrol.engine.app_runner import AppRunner
    from patrol.engine.state_file import Store
    from patrol.engine.state_writer import StateWriter

log = structlog.get_logger("patrol.sets")

#: how long a copy restarted by a rolling restart may take to run again (beyond its
#: stop timeout and ``backoff-reset``) before the rolling restart ends
ROLL_START_TIMEOUT = 60.0
#: how often a rolling restart looks whether the copy it restarted runs again
ROLL_POLL = 0.05


class SetsHost(Protocol):
    """What the sets need of the supervisor."""

    config: PatrolConfig
    apps: dict[str, "AppRunner"]
    loop: asyncio.AbstractEventLoop
    shutting_down: bool
    writer: "StateWriter | None"
    store: "Store | None"
    reload_lock: asyncio.Lock

    def make_app(self, config: AppConfig) -> "AppRunner": ...

    def now(self) -> float: ...


class SetRecord:
    """One set as the state file keeps it: the size it was scaled to, and the
    ``instances`` of the config at the time (a config that says otherwise now wins)."""

    group = "set"

    def __init__(self, set_id: str, configured: int, size: int) -> None:
        self.id = set_id
        self.configured = configured
        self.size = size
        self.state = State()  # the state file keeps a row per item; a set has no state of its own

    def persist_extra(self) -> dict[str, Any]:
        return {"instances": self.size, "configured": self.configured}


class InstanceSets:
    """Every set of the running config (see the module docstring)."""

    def __init__(self, host: SetsHost) -> None:
        self.host = host
        self.records: dict[str, SetRecord] = {}
        self._converging: dict[str, asyncio.Task[None]] = {}
        self._rolling: dict[str, asyncio.Task[None]] = {}

    # -- sizes -----------------------------------------------------------------------

    def load(self, config: PatrolConfig) -> dict[str, int]:
        """The sets of ``config`` with their sizes (the state file's where it still
        applies); returns set id -> size."""
        store = self.host.store
        records: dict[str, SetRecord] = {}
        for app in config.apps.values():
            if not app.instances:
                continue
            record = self.records.get(app.id)
            if record is None or record.configured != app.instances:
                record = SetRecord(app.id, app.instances, app.instances)
                row = store.load("set", app.id, State()) if store is not None and app.id not in self.records else None
                if row is not None and row.get("configured") == app.instances and isinstance(row.get("instances"), int):
                    record.size = row["instances"]
            records[app.id] = record
        for gone in self.records.keys() - records.keys():
            self._cancel(gone)
            if self.host.writer is not None:
                self.host.writer.forget("set", gone)
        self.records = records
        return {set_id: record.size for set_id, record in records.items()}

    def size(self, set_id: str) -> int:
        record = self.records.get(set_id)
        return record.size if record is not None else 0

    def members(self, set_id: str) -> list["AppRunner"]:
        """The copies of the set that exist now, in order (empty for an unknown id)."""
        found = [r for r in self.host.apps.values() if r.config.instance_of == set_id]
        return sorted(found, key=lambda r: r.config.instance)

    def scale(self, set_id: str, size: int) -> None:
        """Give the set ``size`` copies: recorded at once (the state file's next commit),
        applied by the set's task."""
        record = self.records[set_id]
        if record.size != size:
            record.size = size
            if self.host.writer is not None:
                self.host.writer.changed(record, durable=True)
            log.info("scaling", set=set_id, instances=size)
        task = self._converging.get(set_id)
        if task is None or task.done():
            self._converging[set_id] = self.host.loop.create_task(self._converge(set_id))

    async def _converge(self, set_id: str) -> None:
        host = self.host
        async with host.reload_lock:  # a reload, or another set's change, never runs meanwhile
            while not host.shutting_down and set_id in self.records:
                members, wanted = self.members(set_id), self.records[set_id].size
                if len(members) > wanted:
                    last = members[-1]  # the highest goes first
                    await last.stop("scaled down")
                    if host.apps.get(last.id) is last:
                        del host.apps[last.id]
                    if host.writer is not None:
                        host.writer.forget("app", last.id)
                elif len(members) < wanted:
                    copy = make_copy(host.config.apps[set_id], len(members))
                    runner = host.apps[copy.id] = host.make_app(copy)
                    runner.start()
                else:
                    return

    # -- actions on a whole set ------------------------------------------------------

    def toggle(self, set_id: str, toggle: int) -> None:
        """Apply a toggle to every copy; a rolling restart goes one copy at a time."""
        template = self.host.config.apps[set_id]
        self._cancel_roll(set_id)
        members = self.members(set_id)
        if toggle == RESTART and template.restart_mode == "rolling" and len(members) > 1:
            self._rolling[set_id] = self.host.loop.create_task(self._roll(set_id, [m.id for m in members]))
            return
        for runner in members:
            _toggle(runner, toggle)

    async def _roll(self, set_id: str, ids: list[str]) -> None:
        host = self.host
        for item_id in ids:
            runner = host.apps.get(item_id)
            if runner is None or runner.retired or host.shutting_down:
                continue
            before = runner.state.instance_id
            _toggle(runner, RESTART)
            if not await self._back(runner, before):
                log.error("rolling restart ended: a copy did not run again in time", set=set_id, copy=item_id,
                          state=runner.phase.value, reason=runner.last_reason)
                return
        log.info("rolling restart done", set=set_id, copies=len(ids))

    async def _back(self, runner: "AppRunner", before: str) -> bool:
        """Wait until ``runner`` runs a new instance that stayed up ``backoff-reset``
        seconds (False when it did not in time; True when it was disabled meanwhile)."""
        config, host = runner.config, self.host
        deadline = host.now() + config.stop_timeout + config.backoff.reset + ROLL_START_TIMEOUT
        while host.now() < deadline:
            st = runner.state
            if st.disabled or runner.retired:
                return True  # someone else decided about this copy: go on with the others
            if runner.phase == ItemState.RUNNING and st.instance_id not in ("", before) and st.started is not None \
                    and runner.sup.wall() - st.started >= config.backoff.reset:
                return True
            await asyncio.sleep(ROLL_POLL)
        return False

    def _cancel_roll(self, set_id: str) -> None:
        task = self._rolling.pop(set_id, None)
        if task is not None:
            task.cancel()

    def _cancel(self, set_id: str) -> None:
        self._cancel_roll(set_id)
        task = self._converging.pop(set_id, None)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        """Shutdown: no set changes any more."""
        for set_id in list(self._rolling) + list(self._converging):
            self._cancel(set_id)


def _toggle(runner: "AppRunner", toggle: int) -> None:
    with runner.state.session() as s:
        s.toggle(toggle)
    runner.toggled()

