"""Be told when files in a directory are deleted, renamed or renamed over (Linux inotify).

Events only, no polling: nothing wakes Patrol while nobody touches the directory. Where
inotify is not there (another OS, the per-user watch limit reached, a seccomp filter),
:meth:`DirWatch.start` returns False and the caller relies on its own checks.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
from typing import Callable

IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
#: events about the directory itself, or lost events: the caller must look for itself
ALARM = IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW | IN_IGNORED
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class DirWatch:
    """Calls ``callback`` (on the loop) when one of ``names`` in ``directory`` is deleted,
    renamed away or replaced by a rename, or when the directory itself goes away (after
    that the watch has ended: :attr:`active` is False)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, directory: str, names: set[str],
                 callback: Callable[[], None]) -> None:
        self.loop = loop
        self.directory = directory
        self.names = {os.fsencode(n) for n in names}
        self.callback = callback
        self._fd = -1

    @property
    def active(self) -> bool:
        return self._fd >= 0

    def start(self) -> bool:
        """Begin watching; False if inotify cannot be used here."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return False
        if fd < 0:
            return False
        mask = IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
        if libc.inotify_add_watch(fd, os.fsencode(self.directory), mask) < 0:
            os.close(fd)
            return False
        self._fd = fd
        self.loop.add_reader(fd, self._read)
        return True

    def close(self) -> None:
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            self.callback()
            return
        hit = ended = False
        offset = 0
        while offset + EVENT.size <= len(data):
            _, mask, _, length = EVENT.unpack_from(data, offset)
            name = data[offset + EVENT.size: offset + EVENT.size + length].rstrip(b"\0")
            offset += EVENT.size + length
            hit = hit or bool(mask & ALARM) or name in self.names
            ended = ended or bool(mask & IN_IGNORED)
        if ended:
            self.close()
        if hit:
            self.callback()
