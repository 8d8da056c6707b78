""""Why did it crash?": the last lines the previous instance of an app wrote to stderr.

A crash-looping app's current files are new and nearly empty; what explains the crash
sits in the instance before. The detail page shows the tail of that instance's stderr
(or of its one merged file), read once per page in a worker thread, bounded in lines
and bytes, and only from inside the app's log directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from patrol.engine.logread import LogDir, tail

if TYPE_CHECKING:
    from patrol.engine.item_state import HistoryRecord

#: lines of the previous instance's stderr a detail page shows, and bytes read for them at most
LINES = 10
MAX_BYTES = 16 * 1024


@dataclass(frozen=True)
class Previous:
    """The tail of the previous instance's stderr and where its whole file is."""

    text: str
    relative: str  # the file, relative to the log directory
    record: "HistoryRecord"


def stderr_file(stdout: str) -> str:
    """The stderr file of an instance whose stdout (or merged) file is ``stdout``."""
    return stdout[: -len(".stdout.log")] + ".stderr.log" if stdout.endswith(".stdout.log") else stdout


def previous_stderr(logdir: LogDir, history: Iterable["HistoryRecord"]) -> Previous | None:
    """The last lines of stderr of the newest ended instance that has a log (blocking:
    call it in a worker thread). None when that file is gone, empty or outside."""
    record = next((r for r in reversed(list(history)) if r.log), None)
    if record is None:
        return None
    relative = logdir.relative(stderr_file(record.log))
    path = logdir.resolve(relative) if relative else None
    if relative is None or path is None:
        return None
    try:
        found = tail(path, LINES, MAX_BYTES)
    except OSError:
        return None
    return Previous(found.text, relative, record) if found.text.strip() else None
