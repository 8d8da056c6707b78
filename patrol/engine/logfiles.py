"""App log files in the original layout: ``LOGDIR/YEAR/month/DAY/<ns>.stdout.log``.

YEAR has four digits, month is the lower-case English name, DAY has no zero padding,
all in local time; the file name is the start time in Unix nanoseconds.

Patrol writes these files itself (the app writes into a pipe, see
:mod:`patrol.engine.logpipes`; writer threads write, :mod:`patrol.engine.logwriter`), so rotation is a rename and a reopen: nothing is copied,
nothing is lost, and a file never grows beyond ``log-max-bytes``. Rotated generations
are ``<file>.1`` (newest) .. ``<file>.N`` (oldest, N = ``log-max-files``).

Anything under a log directory may have been put there by someone else: every path is
opened through :mod:`patrol.util.safefile` (never blocking on a FIFO, never through a
planted symlink, a regular file with one link or refused).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Callable

import structlog

from patrol.engine.item_state import LogFiles
from patrol.util.safefile import open_directory, open_for_append

log = structlog.get_logger("patrol.logs")

MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)
#: log files are readable by their owner and group only (apps' output may be confidential)
LOG_MODE = 0o640
#: seconds between attempts to reopen a log file that could not be written
RETRY_SECONDS = 1.0
#: seconds without a write after which a log file's descriptor is closed (the next write
#: opens it again). Most apps are quiet most of the time, and every descriptor Patrol
#: holds is copied and closed again by the kernel at each spawn: two files held open per
#: app made a respawn among 4,900 apps cost several times one among 500. rsyslog closes
#: its per-name files after 10 minutes idle, node-logstash after 5: a log file is
#: reopened at most this often per quiet app, which is cheap.
IDLE_CLOSE_SECONDS = 30.0
#: a current file, or one of its rotated generations
LOG_NAME = re.compile(r"(\d{1,20})\.(stdout|stderr|stdmerge)\.log(?:\.(\d{1,4})(\.gz)?)?")


def day_directory(root: str, when_ns: int) -> str:
    t = time.localtime(when_ns / 1e9)
    return os.path.join(root, f"{t.tm_year:04d}", MONTHS[t.tm_mon - 1], str(t.tm_mday))


def log_paths(root: str, merged: bool, when_ns: int) -> LogFiles:
    """Where an instance started at ``when_ns`` writes (nothing is created here)."""
    directory = day_directory(root, when_ns)
    if merged:
        path = os.path.join(directory, f"{when_ns}.stdmerge.log")
        return LogFiles(path, path, True)
    return LogFiles(os.path.join(directory, f"{when_ns}.stdout.log"),
                    os.path.join(directory, f"{when_ns}.stderr.log"))


# -- one file Patrol writes ---------------------------------------------------------------

@dataclass(slots=True)  # one per stream of every running app
class LogSink:
    """One log file Patrol appends an app's output to, rotated by rename.

    * **Bounded:** with ``max_bytes`` the file never grows beyond it. Output that does
      not fit is cut at its last newline, the file is rotated (``X`` -> ``X.1``, older
      generations shifted, the one beyond ``max_files`` overwritten) and the rest goes to
      a fresh ``X``; only a line longer than ``max_bytes`` is split. So one stream of one
      instance never holds more than ``(max_files + 1) * max_bytes`` bytes on disk.
    * **Lossless:** the renamed file is complete (nothing is written to it after the
      rename), so ``X.N`` .. ``X.1`` + ``X`` is exactly what the app wrote.
    * **Never raises:** a write error (disk full, I/O error, directory deleted) drops the
      data (counted in ``dropped``), is logged once per episode, and the file is reopened
      at most every ``RETRY_SECONDS`` until writing works again. The caller keeps
      draining the app's pipe whatever happens here, so the app never blocks on the disk.
    * **Stays inside ``root``** (the log directory): the directories below it are opened
      one by one without following symlinks, for every open and every rotation.
    * **Open only while in use:** the descriptor is closed once nothing was written for
      ``idle_close`` seconds (by :meth:`check`, each tick) and opened again, through the
      same checks, by the next write. A closed file that was deleted meanwhile is made
      again by the next check, as an open one is.
    """

    path: str
    root: str = ""  # the log directory; "" = the file's own directory
    max_bytes: int = 0
    max_files: int = 5
    on_rotated: Callable[["LogSink"], None] | None = None
    #: gzip rotated generations from ``.2`` on (``.1`` stays plain, so a follower one
    #: rotation behind still finds it); called after a rotation with the inode of the
    #: file that became ``.2``, which the caller compresses (:mod:`patrol.engine.logcompress`)
    compress: bool = False
    on_compress: Callable[["LogSink", int], None] | None = None
    clock: Callable[[], float] = time.monotonic
    #: (uid, gid) the files and the directories made for them belong to (an app with ``user``)
    owner: tuple[int, int] | None = None
    idle_close: float = IDLE_CLOSE_SECONDS
    fd: int = -1
    size: int = 0
    inode: int = 0
    dropped: int = 0  # bytes lost to write errors, in total
    rotations: int = 0
    failing: str | None = None  # the error of the current episode
    _episode_dropped: int = 0
    _retry_at: float = 0.0
    _used_at: float = 0.0  # the last open or write (clock), for closing an idle descriptor

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def _directory(self) -> int:
        directory = os.path.dirname(self.path)
        root = self.root or directory
        below = directory[len(root) + 1:] if directory.startswith(root + "/") else os.path.relpath(directory, root)
        return open_directory(root, below, self.owner)

    def open(self, *, exclusive: bool) -> None:
        """Open (and create) the file; raises ``OSError``. ``exclusive``: it must be new."""
        directory = self._directory()
        try:
            self._open_in(directory, exclusive=exclusive)
        finally:
            os.close(directory)

    def _open_in(self, directory: int, *, exclusive: bool) -> None:
        fd = open_for_append(self.name, exclusive=exclusive, mode=LOG_MODE, dir_fd=directory, shown=self.path)
        st = os.fstat(fd)
        if self.owner is not None and (st.st_uid, st.st_gid) != self.owner and st.st_size == 0:
            try:  # a file just made: the app's user may open it too (0640: its group may read it)
                os.fchown(fd, *self.owner)
            except OSError:
                os.close(fd)
                raise
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.size, self.inode = fd, st.st_size, st.st_ino
        self._used_at = self.clock()

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            try:
                os.close(fd)
            except OSError:
                pass  # already bad (EBADF, EIO): it is closed either way

    # -- writing ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.fd < 0 and not self.reopen():
            self._drop(len(data))
            return
        view = memoryview(data)
        while view:
            piece = view
            if self.max_bytes:
                room = self.max_bytes - self.size
                if room <= 0:
                    if not self._rotate():
                        self._drop(len(view))
                        return
                    continue
                if len(view) > room:
                    cut = bytes(view[:room]).rfind(b"\n") + 1
                    if cut == 0 and self.size > 0:  # the line does not fit: it starts the next file
                        if not self._rotate():
                            self._drop(len(view))
                            return
                        continue
                    piece = view[: cut or room]
            try:
                written = os.write(self.fd, piece)
            except OSError as exc:
                self.fail(exc)
                self._drop(len(view))
                return
            self.size += written
            view = view[written:]
        self._used_at = self.clock()
        if self.failing is not None:
            log.info("writing the log file again", file=self.path, dropped_bytes=self._episode_dropped)
            self.failing = None
            self._episode_dropped = 0

    def check(self) -> None:
        """Each tick: reopen the file when it was deleted or moved away by someone else,
        or could not be written; close its descriptor when it has been idle."""
        if self.fd < 0:
            if self.failing is not None:
                if self.reopen():
                    log.info("log file reopened", file=self.path)
            elif not os.path.lexists(self.path):  # closed while idle, then deleted: made again
                log.warning("log file was deleted or moved away; making it again", file=self.path)
                self.make()
            return
        try:
            gone = os.fstat(self.fd).st_nlink == 0 or os.lstat(self.path).st_ino != self.inode
        except FileNotFoundError:
            gone = True
        except OSError:
            return
        if gone:
            log.warning("log file was deleted or moved away; opening it again", file=self.path)
            self.close()
            self._retry_at = 0.0
            self.reopen()
        elif self.failing is None and self.clock() - self._used_at >= self.idle_close:
            self.close()  # (reopened after a failure, it stays open until a write ends the episode)

    def make(self, *, exclusive: bool = False, keep_open: bool = False) -> bool:
        """Create the file (or find it), closed again unless ``keep_open``: the next write
        opens it. A failure starts a retry episode (logged, the file's problem reported).
        ``exclusive``: it should be new; one of that name already there is appended to."""
        try:
            self.open(exclusive=exclusive)
        except FileExistsError:
            if not self.reopen():  # a file of that very start time exists: appended to
                return False
        except OSError as exc:
            self.fail(exc)
            return False
        if not keep_open:
            self.close()
        return True

    def reopen(self) -> bool:
        """Open the file again unless the last failure was too recent; False if it cannot be."""
        if self.clock() < self._retry_at:
            return False
        try:
            self.open(exclusive=False)
            return True
        except OSError as exc:
            self.fail(exc)
            return False

    def fail(self, exc: OSError) -> None:
        self.close()
        self._retry_at = self.clock() + RETRY_SECONDS
        message = exc.strerror or str(exc)
        if self.failing is None:
            log.warning("cannot write the log file; dropping the app's output until it works again",
                        file=self.path, error=message)
        self.failing = message

    def _drop(self, count: int) -> None:
        self.dropped += count
        self._episode_dropped += count

    # -- rotation --------------------------------------------------------------------

    def _rotate(self) -> bool:
        """Rename the full file away and start a new one; False when nothing can be written."""
        try:
            directory = self._directory()
        except OSError as exc:
            return self._empty_in_place(exc)
        try:
            try:
                if self.max_files == 0:
                    os.unlink(self.name, dir_fd=directory)
                else:
                    to_compress = self._shift(directory)
                    os.rename(self.name, f"{self.name}.1", src_dir_fd=directory, dst_dir_fd=directory)
                    if to_compress and self.compress and self.on_compress is not None:
                        self.on_compress(self, to_compress)
            except OSError as exc:
                return self._empty_in_place(exc)
            self.close()
            self.rotations += 1
            try:
                self._open_in(directory, exclusive=True)
            except OSError as exc:
                self.fail(exc)
        finally:
            os.close(directory)
        if self.on_rotated is not None:
            self.on_rotated(self)
        return self.fd >= 0

    def _empty_in_place(self, exc: OSError) -> bool:
        """It cannot be renamed (or it is gone): keep the disk bounded anyway."""
        log.error("cannot rotate the log file; emptying it instead", file=self.path, error=exc.strerror or str(exc))
        try:
            os.ftruncate(self.fd, 0)
        except OSError as again:
            self.fail(again)
            return False
        self.size = 0
        return True

    def _shift(self, directory: int) -> int:
        """``X.k`` -> ``X.k+1`` for the generations that exist (the oldest is overwritten);
        a generation may be plain or gzipped (``X.k.gz``). Returns the inode of the plain
        file that became ``X.2`` (0: none), the one to compress."""
        top = 1
        while top < self.max_files and (_exists(f"{self.name}.{top}", directory)
                                        or _exists(f"{self.name}.{top}.gz", directory)):
            top += 1
        moved = 0
        for n in range(top - 1, 0, -1):
            for suffix, other in (("", ".gz"), (".gz", "")):
                source, target = f"{self.name}.{n}{suffix}", f"{self.name}.{n + 1}{suffix}"
                try:
                    inode = os.lstat(source, dir_fd=directory).st_ino
                    os.rename(source, target, src_dir_fd=directory, dst_dir_fd=directory)
                except OSError:
                    continue  # not there, or something else sits there (a directory?): skipped
                _remove(f"{self.name}.{n + 1}{other}", directory)  # one form per generation
                if n == 1 and not suffix:
                    moved = inode
        return moved

    def finish_compression(self, temporary: str, inode: int) -> None:
        """Put a compressed copy of the generation ``inode`` in its place (``X.k`` ->
        ``X.k.gz``), wherever rotations have moved it meanwhile; runs in order with the
        writes, so no rotation renames underneath. Gone (pruned, overwritten): dropped."""
        try:
            directory = self._directory()
        except OSError:
            return
        try:
            for n in range(2, self.max_files + 1):
                name = f"{self.name}.{n}"
                try:
                    if os.lstat(name, dir_fd=directory).st_ino != inode:
                        continue
                    os.rename(temporary, f"{name}.gz", src_dir_fd=directory, dst_dir_fd=directory)
                    os.unlink(name, dir_fd=directory)
                    return
                except OSError:
                    continue
            _remove(temporary, directory)
        finally:
            os.close(directory)

    def update_link(self, link: str) -> None:
        """Point the symlink ``link`` (a name in the log directory) at this file, atomically
        (a new symlink renamed over the old one): ``tail -F`` on it follows each start."""
        try:
            root = open_directory(self.root or os.path.dirname(self.path), ".")
        except OSError as exc:
            log.warning("cannot update the current-log symlink", link=link, error=exc.strerror or str(exc))
            return
        temporary = f".{link}.{os.getpid()}.tmp"
        target = os.path.relpath(self.path, self.root or os.path.dirname(self.path))
        try:
            try:
                os.symlink(target, temporary, dir_fd=root)
            except FileExistsError:  # left by a Patrol of this pid that died in between: made again
                _remove(temporary, root)
                os.symlink(target, temporary, dir_fd=root)
            os.rename(temporary, link, src_dir_fd=root, dst_dir_fd=root)
        except OSError as exc:
            _remove(temporary, root)
            log.warning("cannot update the current-log symlink", link=link, error=exc.strerror or str(exc))
        finally:
            os.close(root)


def _remove(name: str, directory: int) -> None:
    try:
        os.unlink(name, dir_fd=directory)
    except OSError:
        pass


def _exists(name: str, directory: int) -> bool:
    try:
        os.lstat(name, dir_fd=directory)
        return True
    except OSError:
        return False


def generations(path: str, limit: int = 1000) -> list[str]:
    """``path.1``, ``path.2``, ... that exist, newest first (stops at the first gap)."""
    found = []
    for n in range(1, limit + 1):
        candidate = f"{path}.{n}"
        if not os.path.lexists(candidate):
            break
        found.append(candidate)
    return found
