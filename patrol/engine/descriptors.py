"""File descriptors: enough for Patrol's work, and some always left for its apps.

Every HTTP connection holds a descriptor, and so does every app Patrol runs (its pidfd,
its log files or pipes while it starts). When connections take them all, a crashed app
cannot be restarted ("Too many open files"). So:

* at start, the soft ``RLIMIT_NOFILE`` is raised towards the hard limit (as Go's
  runtime and systemd do: the soft default of 1024 is a relic of ``select()``), but
  not beyond :data:`TARGET`: children inherit the soft limit, and Python's
  ``subprocess`` cannot lower it again for them without a ``preexec_fn``; programs that
  close every descriptor up to the limit at start would take seconds with a limit of
  a million;
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
log = structlog.get_logger("patrol.descriptors")


def raise_soft_limit(target: int = TARGET) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to ``min(hard, target)`` if it is lower;
    (before, after). Never lowers it; failures are logged, never fatal."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
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


def soft_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return TARGET if soft == resource.RLIM_INFINITY else soft


def connection_room(items: int, wanted: int) -> int:
    """How many HTTP connections may be open at once: ``wanted``, or fewer when the
    descriptor limit leaves less after the reserve for Patrol and its ``items``."""
    room = soft_limit() - RESERVE_BASE - RESERVE_PER_ITEM * items
    return max(MIN_CONNECTIONS, min(wanted, room))
