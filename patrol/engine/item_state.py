"""Per-app and per-service state, with the original's CAS (change counter) rules.

Every logical change happens in one :meth:`State.session`; the first *effective* change
in a session increments ``cas`` by one, further changes in the same session do not, and
setting a field to the value it already has is no change (the original's CAS rules). Key/value
writes and history appends always count. Unlike the original, one logical operation is
one session, so it bumps CAS at most once.

Timestamps are wall-clock seconds (``time.time()``); formatting happens in the API.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

#: toggle numbers of the original API (``toggle`` in a request)
ENABLE, DISABLE, RESTART, RUNONCE_ENABLE, RUNONCE_DISABLE = 1, 2, 3, 4, 5
ENABLE_RUNONCE_ENABLE, ENABLE_RUNONCE_DISABLE = 6, 7
TOGGLES = range(1, 8)

#: no key-values (State.keyvalue): shared by every item that has none
NO_KEYVALUE: Mapping[str, Any] = MappingProxyType({})


@dataclass(slots=True)  # one per running app, and one per run in its history
class LogFiles:
    """Where an instance's output went (``started_log`` of the original)."""

    stdout: str = ""
    stderr: str = ""
    merged: bool = False


@dataclass(slots=True)  # up to ``history`` (100) per item: thousands in a long-lived Patrol
class HistoryRecord:
    """One closed instance, with the original's fields. Service records have no pid/exit code."""

    instance_id: str
    started: float | None
    stopped: float
    lastseen: float | None = None
    pid: int = 0
    disabled: bool = False
    restart: bool = False
    run_once: bool = False
    shutdown: bool = False
    exit_code: int = 0
    #: (new) the signal that killed the process, when Patrol saw it die by one
    exit_signal: int | None = None
    #: (new) why the instance ended when it did not simply exit by itself,
    #: e.g. "ping expired", "disabled", "execute-timeout", "gone while Patrol was down"
    reason: str = ""
    keyvalue: dict[str, Any] = field(default_factory=dict)
    #: (new) the instance's stdout (or merged) log file, when Patrol started it
    log: str = ""


class Session:
    """A change session: the first effective change bumps CAS once.

    ``durable`` says whether the session changed anything but ``lastseen``: the state
    file commits such a session before it is answered, while a session that only
    refreshed ``lastseen`` (a ping, a liveness check) may wait for the periodic flush.
    """

    def __init__(self, state: "State") -> None:
        self.state = state
        self.changed = False
        self.durable = False

    def touch(self) -> None:
        if not self.changed:
            self.changed = True
            self.state.cas += 1

    def set(self, **fields: Any) -> None:
        for name, value in fields.items():
            if getattr(self.state, name) != value:
                setattr(self.state, name, value)
                self.touch()
                if name != "lastseen":
                    self.durable = True

    def merge_keyvalue(self, values: dict[str, Any]) -> None:
        kv = self.state.keyvalue
        if isinstance(kv, dict):
            kv.update(values)  # (in place: pings may carry values, each one)
        else:
            self.state.keyvalue = dict(values)
        self.touch()
        self.durable = True

    def replace_keyvalue(self, values: dict[str, Any]) -> None:
        self.state.keyvalue = dict(values) if values else NO_KEYVALUE
        self.touch()
        self.durable = True

    def append_history(self, record: HistoryRecord) -> None:
        self.state.add_history(record)
        self.state.history_total += 1
        self.touch()
        self.durable = True

    def toggle(self, toggle: int) -> None:
        """Apply a toggle number as the original did.

        1 enables; 2 disables and clears restart and run-once; 3 enables and asks for a
        restart, clearing run-once; 4 (6: and enables) turns run-once on, consumed at
        once if an instance runs; 5 (7: and enables) turns run-once off.
        """
        running = self.state.started is not None
        if toggle == ENABLE:
            self.set(disabled=False)
        elif toggle == DISABLE:
            self.set(disabled=True, restart=False, run_once=False, run_once_consumed=False)
        elif toggle == RESTART:
            self.set(disabled=False, restart=True, run_once=False, run_once_consumed=False)
        elif toggle in (RUNONCE_ENABLE, ENABLE_RUNONCE_ENABLE):
            if toggle == ENABLE_RUNONCE_ENABLE:
                self.set(disabled=False)
            self.set(run_once=True)
            if running:
                self.set(run_once_consumed=True)
        elif toggle in (RUNONCE_DISABLE, ENABLE_RUNONCE_DISABLE):
            if toggle == ENABLE_RUNONCE_DISABLE:
                self.set(disabled=False)
            self.set(run_once=False, run_once_consumed=False)
        # other values: no-op, no error (as the original)


@dataclass(slots=True)  # one per item (thousands at once): no per-object __dict__
class State:
    """The CAS-managed record of one app or service."""

    history_limit: int = 100
    cas: int = field(default_factory=lambda: random.randint(1, 100_000))
    #: changed only through a session (merge/replace); none yet is a shared empty
    #: mapping, not an empty dict per item (most apps have no key-values)
    keyvalue: Mapping[str, Any] = field(default_factory=lambda: NO_KEYVALUE)
    instance_id: str = ""
    started: float | None = None
    lastseen: float | None = None
    disabled: bool = False
    restart: bool = False
    run_once: bool = False
    run_once_consumed: bool = False
    pid: int = 0
    exit_code: int = 0
    started_log: LogFiles | None = None
    #: the last ``history_limit`` records, oldest first; None until the first one (most
    #: items of a large config never end an instance, and an empty deque costs ~600 B)
    _history: deque[HistoryRecord] | None = field(default=None, init=False, repr=False)
    #: records ever appended (the persistent store writes only the new ones)
    history_total: int = 0
    #: called after every session that changed something, with the session's ``durable``
    #: flag (persistence hooks in here)
    on_change: Callable[["State", bool], None] | None = None
    _open: Session | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def history(self) -> Sequence[HistoryRecord]:
        """The last ``history_limit`` closed instances, oldest first (read-only: records
        are added by :meth:`Session.append_history`)."""
        return self._history if self._history is not None else ()

    def add_history(self, record: HistoryRecord) -> None:
        if self._history is None:
            self._history = deque(maxlen=self.history_limit)
        self._history.append(record)

    def set_history(self, records: Iterable[HistoryRecord]) -> None:
        """The history as restored from the state file, oldest first."""
        self._history = deque(records, maxlen=self.history_limit) or None

    @property
    def running(self) -> bool:
        return self.started is not None

    def session(self) -> "SessionScope":
        """A change session (``with state.session() as s:``); a nested one joins the
        open session, so one logical operation (an API request that toggles *and*
        pings) bumps CAS only once."""
        return SessionScope(self)


class SessionScope:
    """The ``with`` block of :meth:`State.session`: opens a :class:`Session`, or joins
    the one already open, and reports the change when the outermost block ends.

    A class rather than a generator-based context manager: every ping opens two
    sessions, and a generator with its wrapper costs several times this object.
    """

    __slots__ = ("state", "opened")

    def __init__(self, state: State) -> None:
        self.state = state
        self.opened: Session | None = None  # the session this block opened (None: it joined one)

    def __enter__(self) -> Session:
        state = self.state
        if state._open is not None:
            return state._open
        s = self.opened = state._open = Session(state)
        return s

    def __exit__(self, *exc_info: object) -> None:
        s = self.opened
        if s is None:
            return
        state = self.state
        state._open = None
        if s.changed and state.on_change is not None:
            state.on_change(state, s.durable)


def new_instance_id() -> str:
    return str(uuid.uuid4())
