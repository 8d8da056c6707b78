"""Log lines that a client can cause at will, at a bounded rate.

A failed guess, a refused connection or a failed ``accept()`` is worth a log line, but
an attacker decides how often they happen: 3,000 wrong secrets a second must not
become 3,000 lines a second (nor fill the disk). :class:`QuietLog` writes the first
line of each kind (its key) and then at most one per ``every`` seconds, carrying how
many were left out in between (``suppressed``); on top, all keys together get at most
``burst`` lines per ``every`` seconds, so many keys (many client addresses) cannot
flood it either. Its table of keys is bounded.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

MAX_KEYS = 1000


class QuietLog:
    def __init__(self, logger: Any, every: float = 10.0, burst: int = 50,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self.logger = logger
        self.every = every
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        #: key -> (when its last line was written, lines left out since)
        self._keys: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()
        self._window_start = -float("inf")
        self._window_lines = 0
        #: lines left out by the overall budget, reported with the next line written
        self._dropped = 0

    def emit(self, key: Hashable, level: str, event: str, **fields: Any) -> bool:
        """Write ``event`` unless ``key`` wrote one less than ``every`` s ago (or the
        overall budget is spent); True when written."""
        now = self.clock()
        last, left_out = self._keys.pop(key, (-float("inf"), 0))
        if now - last < self.every:  # this key wrote lately: count it for its next line
            self._keys[key] = (last, left_out + 1)
            self._bound()
            return False
        if not self._budget(now):  # every key together wrote enough: count it for any next line
            self._dropped += 1
            self._keys[key] = (last, left_out)
            self._bound()
            return False
        if left_out:
            fields["suppressed"] = left_out
        if self._dropped:
            fields["suppressed_other"] = self._dropped
            self._dropped = 0
        self._keys[key] = (now, 0)
        self._bound()
        getattr(self.logger, level)(event, **fields)
        return True

    def _budget(self, now: float) -> bool:
        if now - self._window_start >= self.every:
            self._window_start, self._window_lines = now, 0
        if self._window_lines >= self.burst:
            return False
        self._window_lines += 1
        return True

    def _bound(self) -> None:
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
