"""Keeping a log directory within its limits: a byte budget and an age, oldest first.

Runs in a worker thread (it lists directories). Only Patrol's own files are counted or
touched: regular files with its names (``<ns>.<stream>.log``, ``.N``, ``.N.gz``) in the
``YEAR/month/DAY`` layout; symlinked directories are not entered; the files being
written are never deleted. Day directories left empty are removed (with their month
and year when those are empty too), except today's and yesterday's, where a new
instance may be about to create its files.

A file being written is counted at the size it may reach (its ``log-max-bytes``), which
its writer never lets it pass: once a walk has found it within that size, later walks
count it without a ``stat`` (its inode and type come with the directory listing, so a
file put in its place is looked at again; only one made anew by someone else after
deleting it, under the very same inode number, would be counted at that size). A directory
shared by 5,000 apps holds ~10,000 such files, and their stats were most of each walk.
"""

from __future__ import annotations

import os
import stat
import time
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from patrol.engine.logfiles import LOG_NAME, MONTHS

DAY = 86400.0

#: log directory -> inodes of the files being written that the last walk found within
#: the size they may reach, sorted; replaced by each walk of that directory (one walk at
#: a time per directory: the router's pruning thread). Inodes, not paths, in an array,
#: not a set: 8 bytes each where a set of ints took ~90 (its table and an int object).
_WITHIN: dict[str, array[int]] = {}


@dataclass(frozen=True)
class Pruned:
    removed: list[str]
    freed: int
    total: int  # bytes left in the directory's log files
    emptied: int = 0  # day directories removed because nothing was left in them


def prune(root: str, budget: int, writing: Mapping[str, int], max_age_days: float = 0.0,
          now: Callable[[], float] = time.time) -> Pruned:
    """Delete log files under ``root``: those older than ``max_age_days`` (by mtime; 0 =
    no age limit), then the oldest until they total at most ``budget`` (0 = no limit).

    Oldest means: older instances first (by the start time in the name), and within an
    instance the highest generation first. Files being ``writing`` (path -> the size it
    may reach before its next rotation) are never deleted and count as that size: so the
    directory stays within the budget while they grow, not only right after a prune.
    """
    files: list[tuple[int, int, str, int, float]] = []
    within = _WITHIN.get(root, _NONE)
    seen_within = array("Q")
    growing = 0  # bytes of the files being written (never deleted: not in ``files``)
    days = _day_dirs(root)
    for day in days:
        for entry in _entries(day):  # one entry (and its stat) at a time: a walk's transients stay small
            path = entry.path
            limit = writing.get(path, 0)
            if limit and _holds(within, entry.inode()) and entry.is_file(follow_symlinks=False):
                growing += limit  # being written: never deleted, so neither its age nor its size matters
                seen_within.append(entry.inode())
                continue
            match = LOG_NAME.fullmatch(entry.name)
            if match is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if limit:  # being written: counted, never listed for deletion
                if st.st_size <= limit:
                    seen_within.append(st.st_ino)  # (one larger, say adopted after log-max-bytes shrank: stat again)
                growing += max(st.st_size, limit)
                continue
            files.append((int(match.group(1)), -int(match.group(3) or 0), path, st.st_size, st.st_mtime))
    _WITHIN[root] = array("Q", sorted(seen_within))
    total = growing + sum(f[3] for f in files)
    removed: list[str] = []
    freed = 0
    too_old = now() - max_age_days * DAY if max_age_days > 0 else None
    for _, _, path, size, mtime in sorted(files):
        old = too_old is not None and mtime < too_old
        if not old and (not budget or total <= budget):
            continue
        if path in writing:
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        removed.append(path)
        total -= size
        freed += size
    emptied = _remove_empty(root, days, now()) if removed or too_old is not None else 0
    return Pruned(removed, freed, total, emptied)


_NONE: array[int] = array("Q")


def _entries(directory: str) -> Iterator[os.DirEntry[str]]:
    """The entries of ``directory``, none when it cannot be listed (any more)."""
    try:
        with os.scandir(directory) as listing:
            yield from listing
    except OSError:
        return


def _holds(inodes: array[int], inode: int) -> bool:
    """Is ``inode`` in the sorted array ``inodes``?"""
    at = bisect_left(inodes, inode)
    return at < len(inodes) and inodes[at] == inode


def _remove_empty(root: str, days: list[str], now: float) -> int:
    """Remove day directories with nothing in them (not today's or yesterday's), then
    months and years left empty. ``rmdir`` only ever removes an empty directory."""
    recent = {_day_of(now), _day_of(now - DAY)}
    emptied = 0
    parents: set[str] = set()
    for day in days:
        if os.path.relpath(day, root) in recent:
            continue
        try:
            os.rmdir(day)
        except OSError:
            continue  # not empty (or already gone)
        emptied += 1
        parents.add(os.path.dirname(day))
    for month in parents:
        for directory in (month, os.path.dirname(month)):
            try:
                os.rmdir(directory)
            except OSError:
                break
    return emptied


def _day_of(when: float) -> str:
    t = time.localtime(when)
    return os.path.join(f"{t.tm_year:04d}", MONTHS[t.tm_mon - 1], str(t.tm_mday))


def _day_dirs(root: str) -> list[str]:
    days = []
    for year in _subdirs(root, str.isdigit):
        for month in _subdirs(year, MONTHS.__contains__):
            days.extend(_subdirs(month, str.isdigit))
    return days


def _subdirs(directory: str, name_ok: Callable[[str], bool]) -> list[str]:
    try:
        with os.scandir(directory) as it:
            return [e.path for e in it if name_ok(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
