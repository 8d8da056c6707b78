"""Opening paths that others control, without ever blocking or being fooled.

Patrol often runs as root, on one event loop, and reads or writes files whose paths
other users can influence: pid files, everything under an app's log directory, the
files of ``/proc``. Opening such a path must never block the loop (a FIFO put where a
file was expected would wait for a writer for ever), never open a device (opening some
has side effects), never follow a planted symlink where Patrol writes, and never read
without bound (``/dev/zero``, a huge file). Every such open in Patrol goes through here:

* :func:`read_bounded`: at most ``limit`` bytes of a kernel-made file (``/proc``), or None;
* :func:`read_small_file`: a regular file others write, read whole up to a bound (a pid
  file; the config and every file it names, such as ``http.auth.token-file``);
* :func:`open_for_reading`, :func:`open_for_append`, :func:`open_directory`: log files
  and their directories;
* :func:`open_pipe`: one particular pipe, found again through a path (``/proc/PID/fd/N``).

Every open uses ``O_NONBLOCK`` (a FIFO cannot block the opener) and is checked with
``fstat`` afterwards, so a file swapped in between is refused too.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

#: flags of every open here: never wait on a FIFO, never become a controlling terminal
NONBLOCKING = os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class NotRegularFile(OSError):
    """A path that is not a plain file where one was expected (FIFO, device, socket,
    directory, symlink, or a file with more than one link where Patrol writes)."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({what})", path)


def kind(mode: int) -> str:
    """What a file of ``mode`` is, for messages."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a plain file"


def checked(fd: int, path: str, *, single_link: bool = False) -> int:
    """``fd`` if it is a regular file (with one link when ``single_link``); else it is
    closed and :class:`NotRegularFile` raised."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, kind(st.st_mode))
        if single_link and st.st_nlink > 1:
            raise NotRegularFile(path, f"{st.st_nlink} hard links")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_fd(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def read_bounded(path: str, limit: int) -> bytes | None:
    """At most ``limit`` bytes of a file the kernel makes (``/proc``); None if it cannot
    be read (the process is gone, or may not be looked at)."""
    try:
        fd = os.open(path, os.O_RDONLY | NONBLOCKING)
    except OSError:
        return None
    try:
        return _read_fd(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_small_file(path: str, limit: int) -> tuple[bytes, os.stat_result]:
    """The first ``limit`` bytes of a regular file others may write, and its ``fstat``.

    A symlink is followed (pid files often live behind one, e.g. ``/var/run``; configs
    behind ``/etc/alternatives``), but what it leads to must be a regular file. Raises
    :class:`NotRegularFile` for a FIFO, device, socket or directory (``stat`` first, so
    it is refused without being opened at all; checked again after the open, so one
    swapped in between is refused too, never waited on), ``OSError`` when it cannot be
    opened or read.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, kind(st.st_mode))
    fd = checked(os.open(path, os.O_RDONLY | NONBLOCKING), path)
    try:
        return _read_fd(fd, limit), os.fstat(fd)
    finally:
        os.close(fd)


def open_pipe(path: str, inode: int) -> int | None:
    """The read end of the pipe with ``inode`` that ``path`` leads to, opened without
    blocking; None when it leads elsewhere (the pipe is gone, or its number was reused
    by something else) or cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | NONBLOCKING)
    except OSError:
        return None
    st = os.fstat(fd)
    if stat.S_ISFIFO(st.st_mode) and st.st_ino == inode:
        return fd
    os.close(fd)
    return None


def open_for_reading(path: str) -> BinaryIO:
    """Open a log file to read it; never blocks on a FIFO, never opens a device.

    ``lstat`` first, so a device or FIFO is refused without being opened at all (opening
    some devices has side effects); the descriptor is checked again after the open, so a
    file swapped in between is refused too.
    """
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, kind(st.st_mode))
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | NONBLOCKING)
    return os.fdopen(checked(fd, path), "rb")


def open_for_append(path: str, *, exclusive: bool, mode: int = 0o600, dir_fd: int | None = None,
                    shown: str = "") -> int:
    """Open (creating it with ``mode``) a file Patrol appends to; ``exclusive``: it must
    be new.

    A file with more than one link is refused: a hard link planted under a log directory
    must not make Patrol append to the file it points at. With ``dir_fd``, ``path`` is a
    name in that directory (``shown`` is the whole path, for messages).
    """
    shown = shown or path
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | NONBLOCKING
    if exclusive:
        flags |= os.O_EXCL
    try:
        fd = os.open(path, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(shown, "a symlink") from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads: O_NONBLOCK made the open fail at once
            raise NotRegularFile(shown, "a FIFO") from None
        raise
    return checked(fd, shown, single_link=True)


def open_directory(root: str, relative: str, owner: tuple[int, int] | None = None) -> int:
    """A descriptor of ``root/relative``, made if missing, never through a symlink below
    ``root`` (the configured directory, trusted as written).

    A directory below ``root`` swapped for a symlink would otherwise make Patrol, often
    root, create and rename files wherever it points. Every start of an app asks, and the
    directories nearly always exist: each is opened first and made only when missing.
    ``owner`` (uid, gid): the directories made here (``root`` itself included) are given
    to that user.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        fd = os.open(root, flags)
    except FileNotFoundError:
        os.makedirs(root, exist_ok=True)
        if owner is not None:
            os.chown(root, *owner, follow_symlinks=False)
        fd = os.open(root, flags)
    try:
        for part in [p for p in relative.split("/") if p and p != "."]:
            if part == "..":
                raise OSError(errno.EINVAL, "a path must stay inside its directory", relative)
            try:
                inner = _open_below(fd, part, root, flags)
            except FileNotFoundError:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                    if owner is not None:
                        os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass  # made meanwhile by someone else: opened below, symlink or not
                inner = _open_below(fd, part, root, flags)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_below(fd: int, part: str, root: str, flags: int) -> int:
    try:
        return os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotRegularFile(os.path.join(root, part), "not a plain directory") from None
        raise
