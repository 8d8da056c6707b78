"""The tick's checks of the log files: one writer job for all of them, one listing per
directory (see :meth:`patrol.engine.logwriter.LogWriter.check_all`)."""

from __future__ import annotations

import os
from typing import Callable, Protocol, Sequence


class QueuedFile(Protocol):
    """What the checks ask of a :class:`patrol.engine.logwriter.QueuedFile`."""

    @property
    def path(self) -> str: ...

    def settled(self, listed: Callable[[str], bool]) -> bool: ...

    def check(self, *, here: bool = False) -> None: ...

#: entries a tick's listing of a log directory reads per file of Patrol's in it (each app
#: has two files and a link to each; rotated generations and ended instances add more)
LISTING_SLACK = 16


class Checks:
    """A writer job: the tick's checks of many files (see ``LogWriter.check_all``)."""

    __slots__ = ("files",)
    path = "(the tick's checks of every log file)"

    def __init__(self, files: Sequence[QueuedFile]) -> None:
        self.files = files

    def run(self) -> None:
        listed = Listed(self.files)
        for queued in self.files:
            if not queued.settled(listed):
                queued.check(here=True)

    def abandon(self) -> None:
        pass  # shutting down: nothing to check


class Listed:
    """Is a path's name in its directory? One listing per directory and tick: the files of
    500 apps sharing a log directory were 1,000 ``lstat`` calls and as many passes through
    each file's queue per tick, most of an idle Patrol's work. A file deleted after the
    listing is noticed at the next tick; one made after it is checked in full.

    Only the names of the tick's own files are kept, and a listing reads at most
    :data:`LISTING_SLACK` entries per file of the directory (and 1,024 more): a directory
    someone filled with a million entries costs neither memory nor a long walk every
    tick; its files are then looked at one by one, as before.
    """

    __slots__ = ("_wanted", "_found")

    def __init__(self, files: Sequence[QueuedFile]) -> None:
        self._wanted: dict[str, set[str]] = {}
        for queued in files:
            directory, _, name = queued.path.rpartition("/")
            self._wanted.setdefault(directory, set()).add(name)
        self._found: dict[str, set[str] | None] = {}

    def __call__(self, path: str) -> bool:
        directory, _, name = path.rpartition("/")
        try:
            found = self._found[directory]
        except KeyError:
            found = self._found[directory] = self._list(directory)
        return found is not None and name in found

    def _list(self, directory: str) -> set[str] | None:
        wanted = self._wanted.get(directory, set())
        most = LISTING_SLACK * len(wanted) + 1024
        found: set[str] = set()
        try:
            with os.scandir(directory or "/") as entries:
                for n, entry in enumerate(entries):
                    if n >= most:
                        return None  # (checked one by one)
                    if entry.name in wanted:
                        found.add(entry.name)
        except OSError:
            return None  # (checked in full, file by file)
        return found
