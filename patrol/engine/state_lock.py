"""One Patrol per state file: the lock, and the file operations a rebuild shares with it.

A second Patrol on the same file is refused twice over: an ``flock`` on a lock file
beside the database (the kernel releases it when the holder dies; the file names the
holder's pid), and a Linux abstract socket named after the file's real path, which
nobody can delete the way the lock file can be deleted. A lock file deleted or replaced
under a running Patrol is put back (:meth:`StateLock.check`); the socket keeps a
second Patrol out meanwhile.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
import tempfile

#: Infix of the temporary file a rebuilt state file (or lock file) is written to before
#: it is renamed in; leftovers of a crash are removed by the next Patrol holding the lock.
REBUILD_INFIX = ".rebuild-"


class StateFileLocked(Exception):
    """Another Patrol already uses this state file."""


def lock_path(path: str) -> str:
    """The lock file beside the state file ``path``."""
    return path + ".lock"


class StateLock:
    """Holds the state file ``path`` for this Patrol; raises :class:`StateFileLocked`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = lock_path(path)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise self._in_use(holder) from None
        self._name_lock = _bind_name_lock(path)
        if self._name_lock is None:  # the lock file was deleted under a running Patrol
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise self._in_use(holder)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _in_use(self, holder: str) -> StateFileLocked:
        return StateFileLocked(
            f"state file {self.path} is in use by another Patrol (pid {holder}); "
            "stop it first, or give this config its own state-file"
        )

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._name_lock is not None:
            self._name_lock.close()
            self._name_lock = None

    def check(self) -> bool:
        """Put the lock file back if it was deleted or replaced; True if it was.

        The abstract socket keeps a second Patrol out meanwhile; the file is for the
        operator (it names the holder) and for a Patrol in another network namespace.
        """
        if self._fd < 0:
            return False
        mine = os.fstat(self._fd)
        if mine.st_nlink > 0 and identity(self.lock_path) == (mine.st_dev, mine.st_ino):
            return False
        fd, temporary = tempfile.mkstemp(prefix=os.path.basename(self.lock_path) + REBUILD_INFIX,
                                         dir=os.path.dirname(os.path.abspath(self.path)))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
            os.write(fd, f"{os.getpid()}\n".encode())
            os.replace(temporary, self.lock_path)  # the path always names a locked file
        except OSError:
            os.close(fd)
            unlink(temporary)
            raise
        os.close(self._fd)
        self._fd = fd
        return True


def identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``, None if it does not exist (``stat`` never opens it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _bind_name_lock(path: str) -> socket.socket | None:
    """A Linux abstract socket named after the state file's real path; None if taken.

    It cannot be deleted like a lock file and the kernel frees it when its holder dies.
    Where abstract sockets are not available the flock alone has to do (a dummy socket
    keeps the code simple).
    """
    digest = hashlib.sha256(os.path.realpath(path).encode(errors="surrogateescape")).hexdigest()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(f"\0patrol-state-file:{digest}")
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    return sock
