"""File descriptors: enough for Patrol's work, and some always left for its apps.

Every HTTP connection holds a descriptor, and so does every app Patrol runs (its pidfd,
its log files or pipes while it starts). When connections take them all, a crashed app
cannot be restarted ("Too many open files"). So:

* at start, the soft ``RLIMIT_NOFILE`` is raised towards the hard limit (as Go's
  runtime and systemd do: the soft default of 1024 is a relic of ``select()``), but
  not beyond what Patrol needs (:func:`wanted`: :data:`TARGET`, or more for many items);
* children get the soft limit Patrol itself was started with back (:func:`hand_back`,
  called by the one spawn function): a program written for 1024 (``select()``, or
  closing every descriptor up to the limit at start) runs as it would under systemd.
  It is set with ``prlimit(2)`` on the child right after the spawn returns, not in the
  child before ``exec`` (a ``preexec_fn``): that makes ``subprocess`` fork instead of
  vfork, which copies Patrol's page tables on every spawn (measured: 0.4 ms -> 20 ms
  per spawn with a 400 MB heap, 1.6 -> 3.3 ms with 50 MB, blocking the loop each
  time). The price: the child's first instructions run with Patrol's raised limit;
  what it opens or forks after that does not;
* the HTTP server admits at most :func:`connection_room` connections: what is left
  below the soft limit after a reserve for Patrol itself and for each item.
"""

from __future__ import annotations

import resource

import structlog

#: how far the soft limit is raised at start (the hard limit permitting)
TARGET = 65536
#: descriptors kept for Patrol itself: the state file, listeners, the event loop, the
#: GUI's log reading, reloads
RESERVE_BASE = 128
#: and for each item: its pidfd, its log files or pipes, a spawn's own pipes
RESERVE_PER_ITEM = 8
#: the fewest connections the HTTP server admits, however tight the limit
MIN_CONNECTIONS = 8
#: room for HTTP connections when the limit is raised for many items
MAX_CONNECTIONS_ROOM = 1024
log = structlog.get_logger("patrol.descriptors")

#: the soft limit Patrol was started with, recorded before it is first raised
_inherited: list[int] = []


def raise_soft_limit(target: int = TARGET) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to ``min(hard, target)`` if it is lower;
    (before, after). Never lowers it; failures are logged, never fatal."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if not _inherited:
        _inherited.append(soft)
    wanted = target if hard == resource.RLIM_INFINITY else min(hard, target)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit", soft=soft, hard=hard, error=str(exc))
            return soft, soft
        log.debug("descriptor limit raised", before=soft, after=wanted, hard=hard)
        return soft, wanted
    return soft, soft


def wanted(items: int) -> int:
    """The soft limit Patrol needs for ``items`` apps and services: :data:`TARGET`, or
    more when the reserve for its items and the HTTP connections needs more (10,000 apps
    hold some 40,000 pipes and files). Raising it high costs children nothing: they get
    Patrol's original limit back (:func:`hand_back`)."""
    return max(TARGET, RESERVE_BASE + RESERVE_PER_ITEM * items + MAX_CONNECTIONS_ROOM)


def soft_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return TARGET if soft == resource.RLIM_INFINITY else soft


def connection_room(items: int, wanted: int) -> int:
    """How many HTTP connections may be open at once: ``wanted``, or fewer when the
    descriptor limit leaves less after the reserve for Patrol and its ``items``."""
    room = soft_limit() - RESERVE_BASE - RESERVE_PER_ITEM * items
    return max(MIN_CONNECTIONS, min(wanted, room))


def inherited() -> tuple[int, int] | None:
    """(soft, hard) a child should get when Patrol raised its own soft limit since it
    started; None when it did not."""
    if not _inherited:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == _inherited[0] else (_inherited[0], hard)


def hand_back(pid: int) -> None:
    """Give child ``pid`` the soft descriptor limit Patrol was started with, if Patrol
    raised its own since (never fatal: a child that is gone already needs nothing)."""
    if not _inherited:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == _inherited[0]:
        return
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (_inherited[0], hard))
    except (OSError, ValueError):
        pass  # gone already, or it became another user's program (setuid): it keeps Patrol's
