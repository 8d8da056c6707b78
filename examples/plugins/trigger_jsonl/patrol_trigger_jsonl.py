"""A third-party trigger observer: every lifecycle event as one JSON line in a file.

Set ``PATROL_EVENTS_FILE`` in Patrol's environment (e.g. ``Environment=`` in its
systemd unit). Without it the plugin does not even register its observer: Patrol builds
no event at all while nobody observes, so an unconfigured install costs nothing. Each line holds the event's name,
the item, its state and pid as the API shows them, and, for ``*.closed``, how the
instance ended: a feed for a log shipper or an alerting script.

Observers run on Patrol's event loop: this one only appends a few hundred bytes to a
local file, opened once without blocking (a FIFO put at the path is refused, not waited
on); a slow sink (a network call) would hand its work to a thread instead. It never
sees an item's secret or, for items with one, their key/values: events carry what the
API shows a caller without the secret.

Written against ``from patrol import ...`` alone, as any plugin should be.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from patrol import Event, PatrolView, hookimpl

_files: dict[str, int] = {}  # path -> descriptor, opened on the first event


def _descriptor(path: str) -> int:
    fd = _files.get(path)
    if fd is None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(f"{path} is not a regular file")
        _files[path] = fd
    return fd


def line(event: Event) -> dict[str, Any]:
    """What one event becomes (the item's fields only for item events)."""
    entry: dict[str, Any] = {"event": event.name}
    if event.id:
        entry.update(group=event.group, id=event.id, state=event.snapshot.get("state"),
                     pid=event.snapshot.get("pid"))
    if event.record is not None:
        entry["ended"] = {k: event.record[k] for k in ("exit-code", "exit-signal", "reason") if k in event.record}
    if event.error:
        entry["error"] = event.error
    if getattr(event, "reason", None):  # plugin API 2.1: what *.waiting waits for, why *.unready
        entry["reason"] = event.reason
    return entry


class Observer:
    """Appends every event but the tick to the file at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    @hookimpl
    def patrol_trigger(self, patrol: PatrolView, event: Event) -> None:
        if event.name != "patrol.tick":
            os.write(_descriptor(self.path), (json.dumps(line(event)) + "\n").encode())


_path = os.environ.get("PATROL_EVENTS_FILE")
if _path:  # the hook Patrol looks for on this module: the observer's, bound to the file
    patrol_trigger = Observer(_path).patrol_trigger
