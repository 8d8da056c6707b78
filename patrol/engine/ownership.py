"""Which item a process belongs to: the one place that decides, from proof only.

Patrol runs as root and signals programs. A pid is a number anyone can name (in a ping,
in a pid file) and numbers are reused, so a process belongs to an item only when one of
these proves it:

* **Patrol spawned it for the item**: pid and start time recorded at the spawn (or
  restored from the state file, which recorded them when they were proven);
* **it descends from such a process**: up the ppid chain every process is at least as
  young as its parent (an older "child" means a pid was reused) until a recorded one;
* **it is in a session Patrol created for the item**: every app is started in its own
  session, which outlives its leader, and the kernel does not hand out the number
  again while the session has members;
* **it carries the item's marker** ``PATROL_ID=<id>`` in ``/proc/PID/environ``: every
  process Patrol starts for an app has it, and so do its descendants, including daemons
  that left the session and were re-parented to Patrol (the child subreaper). Anyone can
  put a marker in an environment, so it counts only for a process of Patrol's own user
  (its real uid: a setuid program keeps its caller's) or one re-parented to Patrol (a
  descendant of Patrol's): another local user cannot make Patrol signal their own
  processes' job, setuid programs included, by claiming to be an app.

Whatever the proof says, pid 1, Patrol itself (and its threads) and Patrol's ancestors
are never signalled: :func:`protected` is checked inside :func:`patrol.engine.signalling.signal_pid`
and :func:`patrol.engine.signalling.signal_group`, so no caller can bypass it.

Everything here reads ``/proc`` through :mod:`patrol.engine.procfs` (bounded reads of
kernel-made files, never a path a user controls), so it never blocks the loop.
"""

from __future__ import annotations

import os

import structlog

from patrol.engine import procfs
from patrol.engine.census import ChildCensus
from patrol.engine.procfs import Proc, stat

log = structlog.get_logger("patrol.ownership")

#: The marker every process Patrol starts for an app carries in its environment.
MARKER = b"PATROL_ID="
#: Longest environment read looking for the marker (a marker beyond it proves nothing).
MAX_ENVIRON = 1024 * 1024
#: Unknown children whose environment one sweep reads at most (the rest: next tick).
SWEEP_BUDGET = 256
#: Deepest ppid chain walked looking for a recorded ancestor.
MAX_DEPTH = 128
#: How many records of proven processes are kept before dead ones are pruned (at
#: least: after a prune, the next one waits until the records have doubled).
PRUNE_AT = 4096


def marker(pid: int) -> str | None:
    """The ``PATROL_ID`` in the process's environment (the first one, as getenv), or None."""
    data = procfs.environ(pid, MAX_ENVIRON)
    if not data:
        return None
    for entry in data.split(b"\0"):
        if entry.startswith(MARKER):
            return entry[len(MARKER) :].decode(errors="replace")
    return None


def started_for(pid: int, app_id: str) -> bool:
    """Was ``pid`` started for this app? Its environment carries ``PATROL_ID=<app_id>``.

    That is true of every process Patrol started for the app (and its children), and
    of one an operator started by hand the way Patrol would. Unreadable means no.
    """
    return marker(pid) == app_id


def ancestors() -> list[int]:
    """Patrol's parent, its parent, ... up to (not including) pid 1."""
    found: list[int] = []
    pid = os.getppid()
    while pid > 1 and len(found) < MAX_DEPTH:
        found.append(pid)
        info = stat(pid)
        if info is None:
            break
        pid = info.ppid
    return found


#: (Patrol's pid, its parent's pid) -> (protected pids, their groups). While the parent
#: lives the chain above it can only lose members (an ancestor that dies re-parents its
#: children to one further up, already in the chain), so the cached set stays a superset.
_guarded: dict[tuple[int, int], tuple[frozenset[int], frozenset[int]]] = {}


def _protected_sets() -> tuple[frozenset[int], frozenset[int]]:
    key = (os.getpid(), os.getppid())
    cached = _guarded.get(key)
    if cached is None:
        pids = frozenset({1, os.getpid(), *ancestors()})
        groups = frozenset(info.pgid for info in map(stat, pids) if info is not None)
        _guarded.clear()
        cached = _guarded[key] = (pids, groups)
    return cached


def protected() -> set[int]:
    """Pids Patrol never signals: pid 1, Patrol itself and its ancestors."""
    return set(_protected_sets()[0])


def is_protected(pid: int) -> bool:
    """Is ``pid`` (or the process a thread id ``pid`` belongs to) never to be signalled?"""
    if pid <= 1:
        return True
    guarded = _protected_sets()[0]
    return pid in guarded or (not _leads_its_process(pid) and procfs.tgid(pid) in guarded)


def _leads_its_process(pid: int) -> bool:
    """Is ``pid`` a process (a thread group's leader), so that it is its own tgid?

    ``pidfd_open`` accepts only a leader (EINVAL for any other thread): one system call
    where reading ``/proc/PID/status`` for its ``Tgid`` took ~40-60 us, on every signal.
    False when it cannot tell (gone, no pidfds): then the status file decides.
    """
    try:
        fd = os.pidfd_open(pid)
    except (OSError, OverflowError, AttributeError):
        return False
    os.close(fd)
    return True


def is_protected_group(pgid: int) -> bool:
    """Would signalling group ``pgid`` reach Patrol, pid 1 or an ancestor of Patrol?"""
    if pgid <= 1 or pgid == os.getpgrp():
        return True
    pids, groups = _protected_sets()
    return pgid in pids or pgid in groups


def group_is_still(pgid: int, leader_start: int | None) -> bool:
    """Is process group ``pgid`` still the one recorded (leader's start time, or None
    when the leader was already gone)?

    A group (or session) number is not reused while the group has members. So if no
    process has the number, any member is from the recorded group; if one has it, it
    must be the recorded leader.
    """
    info = stat(pgid)
    if info is None:
        return True
    return leader_start is not None and info.start == leader_start


def has_members(sid: int) -> bool:
    """Has group ``sid`` (the first group of session ``sid``) a member (a zombie counts)?

    A session whose first group is empty is forgotten when pruning; processes of it in
    other groups are still found by their marker. One system call, where
    :func:`group_is_still` reads ``/proc``: an empty group is nobody's to signal.
    """
    try:
        os.killpg(sid, 0)
        return True
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True


class Ownership:
    """The proven processes of every item, keyed by pid (with start time).

    Owners are strings ``"app/<id>"``; the marker ``PATROL_ID=<id>`` names ``"app/<id>"``.
    """

    def __init__(self) -> None:
        self._pids: dict[int, tuple[str, int]] = {}  # pid -> (owner, start)
        self._sessions: dict[int, tuple[str, int | None]] = {}  # sid -> (owner, leader start)
        self._unattributed: set[tuple[int, int]] = set()  # children that proved nothing: (pid, start)
        self.census = ChildCensus(self.attribute, self.recorded)  # every child's owner, one scan for all who ask
        #: records kept before the next prune: with more live processes than PRUNE_AT a
        #: fixed bound would prune (a /proc read per record) at every spawn
        self._prune_at = PRUNE_AT

    # -- recording proof -------------------------------------------------------------

    def spawned(self, owner: str, pid: int) -> int | None:
        """Patrol has just spawned ``pid`` for ``owner`` in a new session; its start time."""
        info = stat(pid)
        if info is None:  # reaped already: nothing left to prove
            return None
        recorded = self._record(owner, pid, info.start)
        if info.sid == pid:
            # the leader's record is the session's too: one tuple kept per app, not two (~60 B)
            record = self._pids.get(pid) if recorded else None
            if len(self._sessions) >= self._prune_at:
                self._prune()
            self._sessions[pid] = record if record is not None else (owner, info.start)
        return info.start

    def restored(self, owner: str, pid: int, start: int | None) -> bool:
        """The state file says ``pid`` (started at ``start``) was proven to be ``owner``'s.

        Recorded only if it is still that very process, and not protected.
        """
        info = stat(pid)
        if start is None or info is None or not info.alive or info.start != start or is_protected(pid):
            return False
        return self._record(owner, pid, start)

    def session(self, owner: str, sid: int, leader_start: int | None) -> None:
        """A session Patrol created for ``owner`` (restored from the state file)."""
        if sid > 1 and sid not in self._sessions and group_is_still(sid, leader_start):
            self._sessions[sid] = (owner, leader_start)

    def forget_session(self, sid: int) -> None:
        self._sessions.pop(sid, None)
        if len(self._sessions) >= self._prune_at:
            self._prune()

    def exited(self, pid: int) -> None:
        """``pid`` was reaped: its number may now name another process."""
        self._pids.pop(pid, None)

    def _record(self, owner: str, pid: int, start: int) -> bool:
        known = self._pids.get(pid)
        if known is not None and known[0] != owner and known[1] == start:
            log.warning("process already belongs to another item", pid=pid, owner=known[0], claimed_by=owner)
            return False
        if len(self._pids) >= self._prune_at:
            self._prune()
        self._pids[pid] = (owner, start)
        return True

    def _prune(self) -> None:
        """Forget processes that are gone and sessions without members."""
        for pid, (_, start) in list(self._pids.items()):
            info = stat(pid)
            if info is None or info.start != start or not info.alive:
                del self._pids[pid]
        for sid, (_, leader) in list(self._sessions.items()):
            if not group_is_still(sid, leader) or not has_members(sid):
                del self._sessions[sid]
        self._prune_at = max(PRUNE_AT, 2 * max(len(self._pids), len(self._sessions)))

    # -- deciding --------------------------------------------------------------------

    def owner(self, pid: int, *, marker_ok: bool = True) -> str | None:
        """Whose process ``pid`` is, by the rules of the module docstring; None if unproven."""
        info = stat(pid)
        if info is None:
            return None
        known = self._pids.get(pid)
        if known is not None and known[1] == info.start:
            return known[0]  # recorded: spawned by Patrol, restored, or proven before
        me = os.getpid()
        if info.ppid != me and is_protected(pid):  # Patrol's own children never are
            return None
        child = info
        for _ in range(MAX_DEPTH):
            known = self._pids.get(child.pid)
            if known is not None and known[1] == child.start:
                return known[0]
            if child.ppid <= 1 or child.ppid == me:
                break
            parent = stat(child.ppid)
            if parent is None or parent.start > child.start:
                break  # a "parent" younger than its child: the pid was reused
            child = parent
        session = self._sessions.get(info.sid)
        if session is not None and group_is_still(info.sid, session[1]):
            return session[0]
        if marker_ok and (info.ppid == me or procfs.real_uid(pid) == os.geteuid()):
            found = marker(pid)
            if found:
                return f"app/{found}"
        return None

    def belongs(self, owner: str, pid: int) -> bool:
        """Is ``pid`` proven to be ``owner``'s? Once proven, it stays recorded (with its
        start time, so a reused pid is not)."""
        if not pid:
            return False
        found = self.owner(pid)
        if found != owner:
            return False
        if pid not in self._pids:  # (a recorded one was just proven by its start time)
            info = stat(pid)
            if info is not None:
                self._record(owner, pid, info.start)
        return True

    def known(self, pid: int) -> bool:
        """Was ``pid`` recorded (spawned, restored or proven) and not yet reaped?"""
        return pid in self._pids

    # -- processes re-parented to Patrol ---------------------------------------------

    async def children_of(self, owner: str, before: int | None = None) -> dict[int, int]:
        """Patrol's live children that are ``owner``'s (pid -> start time), started
        before ``before`` (clock ticks) if given.

        From a scan of every child that callers asking at the same time share
        (:mod:`patrol.engine.census`): the apps of a shutdown all ask at once.
        """
        found = await self.census.owned(owner)
        return found if before is None else {pid: start for pid, start in found.items() if start < before}

    def attributed(self, children: set[int], budget: int | None = None) -> list[tuple[int, int, str]]:
        """``(pid, start, owner)`` of each live child whose owner is proven.

        ``budget`` bounds how many children not seen before are looked at in one call
        (the rest: the next call), so a flood of orphans cannot stall the loop.
        """
        found: list[tuple[int, int, str]] = []
        for pid in children:
            known = self._pids.get(pid)
            if known is not None:
                found.append((pid, known[1], known[0]))
                continue
            info = stat(pid)
            if info is None or not info.alive or (pid, info.start) in self._unattributed:
                continue
            if budget is not None:
                if budget <= 0:
                    continue
                budget -= 1
            owner = self._attribute_new(info)
            if owner is not None:
                found.append((pid, info.start, owner))
        if len(self._unattributed) > 2 * len(children) + 64:
            self._unattributed = {k for k in self._unattributed if k[0] in children}
        return found

    def recorded(self, pid: int) -> tuple[int, str] | None:
        """``(start, owner)`` of a recorded child (spawned, restored or proven, not reaped
        since), without reading anything; None if it is not recorded."""
        known = self._pids.get(pid)
        return None if known is None else (known[1], known[0])

    def attribute(self, pid: int) -> tuple[int, str] | None:
        """``(start, owner)`` of one of Patrol's children, or None if it proves nothing.

        A recorded child (a launcher, a proven instance) costs a dict lookup; any other
        child's environment is read once, and a child that proves nothing is remembered
        (by pid and start time) and not read again.
        """
        known = self._pids.get(pid)
        if known is not None:
            return known[1], known[0]
        info = stat(pid)
        if info is None or not info.alive or (pid, info.start) in self._unattributed:
            return None
        owner = self._attribute_new(info)
        return None if owner is None else (info.start, owner)

    def _attribute_new(self, info: Proc) -> str | None:
        owner = self.owner(info.pid)
        if owner is None:
            self._unattributed.add((info.pid, info.start))
        return owner
