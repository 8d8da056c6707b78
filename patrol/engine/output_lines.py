"""Listeners of an app's output: lines as Patrol reads them from the app's pipes.

The ``log`` probe (and anything else that reacts to what an app prints) subscribes to
the current run's output here. Lines are cut where the pipe's bytes have a newline, on
the loop, right after each read (never from a file or a writer thread): a listener sees
a line as soon as Patrol has read it. Reading costs nothing extra while nobody listens.
"""

from __future__ import annotations

from typing import Callable

import structlog

log = structlog.get_logger("patrol.logs")

#: a line longer than this reaches listeners in pieces (bytes): an app that never prints
#: a newline cannot make Patrol hold its whole output
MAX_LINE = 8192

OutputListener = Callable[[str, str], None]


class Subscription:
    """One listener's registration; :meth:`cancel` ends it (idempotent)."""

    def __init__(self, owner: "OutputLines", callback: OutputListener) -> None:
        self.owner = owner
        self.callback = callback

    def cancel(self) -> None:
        self.owner.remove(self)


class OutputLines:
    """The listeners of one run's output, and each stream's unfinished line."""

    #: one per app (thousands at once): no per-object __dict__
    __slots__ = ("subscriptions", "_partial")

    def __init__(self) -> None:
        self.subscriptions: list[Subscription] = []
        self._partial: dict[str, bytes] = {}

    def listen(self, callback: OutputListener) -> Subscription:
        subscription = Subscription(self, callback)
        self.subscriptions.append(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        if subscription in self.subscriptions:
            self.subscriptions.remove(subscription)
        if not self.subscriptions:
            self._partial.clear()

    def feed(self, stream: str, data: bytes) -> None:
        """Bytes read from ``stream``'s pipe: hand every finished line to the listeners."""
        if not self.subscriptions:
            return
        data = self._partial.pop(stream, b"") + data
        *lines, rest = data.split(b"\n")
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        if rest:
            self._partial[stream] = rest
        for raw in lines:
            for start in range(0, max(len(raw), 1), MAX_LINE):
                self._deliver(stream, raw[start:start + MAX_LINE].decode(errors="replace").rstrip("\r"))

    def end(self, stream: str) -> None:
        """End of ``stream``: its last line, if it had no newline, is finished too."""
        rest = self._partial.pop(stream, b"")
        if rest and self.subscriptions:
            self._deliver(stream, rest.decode(errors="replace"))

    def _deliver(self, stream: str, line: str) -> None:
        for subscription in list(self.subscriptions):
            try:
                subscription.callback(stream, line)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the app's logs
                log.exception("an output listener failed; it is removed")
                self.remove(subscription)
