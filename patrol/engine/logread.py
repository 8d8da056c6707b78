"""Reading an app's log files safely: containment, tail, follow, listing, runs.

The one reader of log files for the GUI's pages, the API's log lines and so the
``patrol logs`` client: one cursor (file, inode, offset) that survives rotation.

Every path a request names is resolved (symlinks too) and must stay inside the app's
log directory, so no URL, ``..`` or symlink can make Patrol serve another file. Only
regular files are opened, with ``O_NONBLOCK`` (a FIFO, device or socket someone put in
the log directory is refused, never waited on). Reads are bounded (a tail reads from the
end, a follow returns at most one chunk) and are meant to run in a worker thread, never
on the supervisor's loop.

Following survives rotation by rename (see :mod:`patrol.logfiles`): a follower names the
file *and* the inode it read; when the path has a new inode, the old file is found among
the rotated generations and read to its end before the new file is read from its start,
so every byte is returned exactly once.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Iterator
from urllib.parse import quote

from patrol.engine.logfiles import MONTHS, generations
from patrol.util.safefile import open_for_reading

#: the most lines a tail returns, and the most bytes it reads to find them
MAX_LINES = 10_000
TAIL_MAX_BYTES = 8 * 1024 * 1024
#: the most bytes one follow step returns (the browser asks again at once for more)
FOLLOW_CHUNK = 256 * 1024
BLOCK = 64 * 1024
STREAMS = ("stdout", "stderr", "stdmerge")
_LOG_NAME = re.compile(r"(\d{1,20})\.(stdout|stderr|stdmerge)\.log")


@dataclass(frozen=True)
class Entry:
    """One name in a directory listing."""

    name: str  # for display (undecodable bytes replaced)
    href: str  # percent-encoded, relative to the listed directory
    is_dir: bool
    size: int
    mtime: float


@dataclass
class Run:
    """The log files of one start of the app, named by its start time in nanoseconds."""

    ns: int
    files: dict[str, str] = field(default_factory=dict)  # stream -> path relative to root
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def started(self) -> float:
        return self.ns / 1e9


@dataclass(frozen=True)
class Tail:
    text: str
    offset: int  # where a follow continues (the file size when read)
    truncated: bool  # fewer lines than asked because the byte limit was reached
    inode: int = 0  # the file read (a follow names it, to notice a rotation)
    data: bytes = b""  # the lines' bytes, as in the file (``offset`` is where they end)


@dataclass(frozen=True)
class Chunk:
    text: str
    offset: int
    reset: bool  # the file shrank (truncated in place): reading restarted at 0
    more: bool  # there is more to read right away
    inode: int = 0  # the file this chunk came from; the offset is in that file
    rotated: bool = False  # the followed file was rotated: reading moved on to the new one
    lost: bool = False  # the rotated file was removed before it was read to its end
    data: bytes = b""  # the bytes read (``text`` is them decoded, up to a split character)
    start: int = 0  # where in the file ``data`` begins
    live: bool = True  # read from the file now at the followed path (not a rotated generation)


class LogDir:
    """An app's log directory, and nothing outside it."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    def resolve(self, relative: str) -> str | None:
        """The real path of ``relative`` if it exists inside the directory, else None."""
        if "\0" in relative:
            return None
        path = os.path.realpath(os.path.join(self.root, relative.lstrip("/")))
        if not self.contains(path) or not os.path.exists(path):
            return None
        return path

    def contains(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root.rstrip("/") + "/")

    def relative(self, path: str) -> str | None:
        """``path`` (e.g. a current log file) relative to the directory, if inside."""
        real = os.path.realpath(path)
        if not self.contains(real) or real == self.root:
            return None
        return os.path.relpath(real, self.root)

    def listing(self, directory: str) -> list[Entry]:
        """Entries of a directory (already resolved), directories first, then by name."""
        entries = []
        with os.scandir(directory) as it:
            for item in it:
                if item.is_symlink() and not self.contains(os.path.realpath(item.path)):
                    continue  # it leads out of the directory: never shown, never served
                try:
                    st = item.stat()
                except OSError:
                    continue  # a dangling symlink: nothing to show
                is_dir = stat.S_ISDIR(st.st_mode)
                if not is_dir and not stat.S_ISREG(st.st_mode):
                    continue  # a FIFO, socket or device is no log: never shown, never opened
                raw = os.fsencode(item.name)
                href = _quote(raw) + ("/" if is_dir else "")
                name = raw.decode("utf-8", "replace")
                entries.append(Entry(name, href, is_dir, st.st_size, st.st_mtime))
        entries.sort(key=lambda e: (not e.is_dir, e.name))
        return entries

    def runs(self, limit: int) -> list[Run]:
        """The newest ``limit`` runs, found by walking YEAR/month/DAY newest first."""
        found: dict[int, Run] = {}
        for day in self._days():
            names = _names(day)
            for name in names:
                match = _LOG_NAME.fullmatch(name)
                if match is None:
                    continue
                ns, stream = int(match.group(1)), match.group(2)
                run = found.setdefault(ns, Run(ns))
                path = os.path.join(day, name)
                run.files[stream] = os.path.relpath(path, self.root)
                try:
                    run.sizes[stream] = os.stat(path).st_size
                except OSError:
                    run.sizes[stream] = 0
            if len(found) >= limit:
                break
        return sorted(found.values(), key=lambda r: r.ns, reverse=True)[:limit]

    def _days(self) -> Iterator[str]:
        years = sorted((n for n in _names(self.root) if n.isdigit()), key=int, reverse=True)
        for year in years:
            year_dir = os.path.join(self.root, year)
            months = sorted((n for n in _names(year_dir) if n in MONTHS), key=MONTHS.index, reverse=True)
            for month in months:
                month_dir = os.path.join(year_dir, month)
                for day in sorted((n for n in _names(month_dir) if n.isdigit()), key=int, reverse=True):
                    yield os.path.join(month_dir, day)


def tail(path: str, lines: int, max_bytes: int = TAIL_MAX_BYTES) -> Tail:
    """The last ``lines`` lines of a file, reading backwards in blocks from its end."""
    with open_for_reading(path) as f:
        st = os.fstat(f.fileno())
        size = st.st_size
        pos = size
        data = b""
        while pos > 0 and data.count(b"\n") <= lines and size - pos < max_bytes:
            step = min(BLOCK, pos, max_bytes - (size - pos))
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    body = data[:-1] if data.endswith(b"\n") else data  # the last newline ends a line, starts none
    idx = len(body)
    for _ in range(lines):
        idx = body.rfind(b"\n", 0, idx)
        if idx < 0:
            break
    truncated = False
    if idx >= 0:
        cut = idx + 1
    elif pos == 0:
        cut = 0  # the whole file has fewer lines than asked
    else:  # the byte limit was reached: drop the partial line it cut through
        truncated = True
        cut = body.find(b"\n") + 1
    return Tail(data[cut:].decode("utf-8", "replace"), size, truncated, st.st_ino, data[cut:])


def read_from(path: str, offset: int, limit: int = FOLLOW_CHUNK) -> Chunk:
    """What was appended since ``offset``: at most ``limit`` bytes, and a UTF-8
    character split at the end waits for the next step."""
    with open_for_reading(path) as f:
        return _read_open(f, offset, limit)


def _read_open(f: BinaryIO, offset: int, limit: int) -> Chunk:
    st = os.fstat(f.fileno())
    size = st.st_size
    reset = offset > size
    if reset:
        offset = 0
    f.seek(offset)
    data = f.read(min(limit, size - offset))
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text = decoder.decode(data, final=False)
    consumed = len(data) - len(decoder.getstate()[0])
    return Chunk(text, offset + consumed, reset, offset + len(data) < size, st.st_ino, data=data, start=offset)


def follow(root: str, relative: str, offset: int, inode: int | None, limit: int = FOLLOW_CHUNK) -> Chunk | None:
    """The next chunk of the log file ``relative`` for a follower at ``offset`` of ``inode``.

    Rotation renames ``X`` to ``X.1`` (and ``X.n`` to ``X.n+1``) and starts a new ``X``.
    When ``relative`` no longer is the file ``inode``, that file is found among the
    generations; once it is read to its end, the follower moves to the next newer one
    (``X.n-1`` .. ``X.1``, then ``X``) from its start (``rotated``). So a follower that
    fell behind by several rotations still gets every byte once, as long as the files it
    has not read yet are kept (``lost`` says when they were not; a file is known by its
    inode only, so if a deleted file's inode number was reused by a newer generation, a
    follower that far behind may skip lines unnoticed). None: there is no such file.
    """
    logdir = LogDir(root)
    path = logdir.resolve(relative)
    with ExitStack() as stack:
        current = stack.enter_context(open_for_reading(path)) if path is not None else None
        if inode is None or (current is not None and os.fstat(current.fileno()).st_ino == inode):
            return _read_open(current, offset, limit) if current is not None else None
        rotated = _generations(logdir, relative)
        found = _find_inode(rotated, inode)
        if found is not None:
            n, old = found
            with old:
                chunk = replace(_read_open(old, offset, limit), live=False)
            if chunk.reset:  # shorter than where the follower was: not its file (an inode reused)
                return replace(chunk, reset=False, lost=True)
            if chunk.offset != offset or chunk.more:  # it made progress: the follower asks again
                return chunk
            newer = _open_quietly(rotated[n - 1]) if n > 0 else None
            if newer is not None:
                stack.enter_context(newer)
            elif current is None:  # between the rename and the new file: nothing new yet
                return chunk
            else:
                newer = current
        elif current is None:
            return None
        else:
            newer = current
        chunk = _read_open(newer, 0, limit)
        return replace(chunk, reset=False, rotated=True, lost=found is None, live=newer is current)
    return None  # pragma: no cover - ExitStack does not swallow exceptions


def _generations(logdir: LogDir, relative: str) -> list[str]:
    """The rotated generations of ``relative`` that are plain files in the directory, newest first."""
    directory = logdir.resolve(os.path.dirname(relative.lstrip("/")))
    if directory is None:
        return []
    return generations(os.path.join(directory, os.path.basename(relative)))


def _find_inode(paths: list[str], inode: int) -> tuple[int, BinaryIO] | None:
    """The index in ``paths`` of the file ``inode``, opened."""
    for n, candidate in enumerate(paths):
        f = _open_quietly(candidate)
        if f is None:
            continue
        if os.fstat(f.fileno()).st_ino == inode:
            return n, f
        f.close()
    return None


def _open_quietly(path: str) -> BinaryIO | None:
    try:
        return open_for_reading(path)  # a symlink or anything but a regular file is refused
    except OSError:
        return None


def open_raw(path: str) -> tuple[BinaryIO, int]:
    """A log file opened for sending whole, and its size now."""
    f = open_for_reading(path)
    return f, os.fstat(f.fileno()).st_size


def _names(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _quote(raw: bytes) -> str:
    return quote(raw, safe="")
