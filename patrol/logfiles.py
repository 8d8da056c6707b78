"""App log files in the original layout: ``LOGDIR/YEAR/month/DAY/<ns>.stdout.log``.

YEAR has four digits, month is the lower-case English name, DAY has no zero padding,
all in local time; the file name is the start time in Unix nanoseconds. The parent
keeps no descriptor open after the spawn (the original leaked one per start).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

from .state import LogFiles

MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)


def day_directory(root: str, when_ns: int) -> str:
    t = time.localtime(when_ns / 1e9)
    return os.path.join(root, f"{t.tm_year:04d}", MONTHS[t.tm_mon - 1], str(t.tm_mday))


@dataclass
class OpenLogs:
    """Descriptors to hand to the child; close them in the parent right after spawn."""

    files: LogFiles
    stdout_fd: int
    stderr_fd: int

    def close(self) -> None:
        for fd in {self.stdout_fd, self.stderr_fd}:
            try:
                os.close(fd)
            except OSError:
                pass


def open_logs(root: str, merged: bool, when_ns: int | None = None) -> OpenLogs:
    """Create the day directory and open the log file(s) for appending.

    Raises ``OSError`` (with the path) when the directory or a file cannot be made.
    """
    when_ns = time.time_ns() if when_ns is None else when_ns
    directory = day_directory(root, when_ns)
    os.makedirs(directory, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    if merged:
        path = os.path.join(directory, f"{when_ns}.stdmerge.log")
        fd = os.open(path, flags, 0o644)
        return OpenLogs(LogFiles(path, path, True), fd, fd)
    out = os.path.join(directory, f"{when_ns}.stdout.log")
    err = os.path.join(directory, f"{when_ns}.stderr.log")
    out_fd = os.open(out, flags, 0o644)
    try:
        err_fd = os.open(err, flags, 0o644)
    except OSError:
        os.close(out_fd)
        raise
    return OpenLogs(LogFiles(out, err), out_fd, err_fd)


def oversized(files: LogFiles, limit: int) -> list[str]:
    """The log files of an instance that have grown beyond ``limit`` bytes."""
    found = []
    for path in dict.fromkeys((files.stdout, files.stderr)):
        try:
            if path and os.stat(path).st_size > limit:
                found.append(path)
        except OSError:
            pass
    return found


def copytruncate(path: str) -> None:
    """Keep the file's content as ``path.1`` and empty it in place.

    The app keeps writing to its open descriptor (opened with O_APPEND), so truncating
    is the only rotation that needs no help from the app; what it writes between the
    copy and the truncation is lost, as with logrotate's ``copytruncate``.
    """
    shutil.copyfile(path, path + ".1")
    os.truncate(path, 0)
