"""Compressing a rotated log generation (``log-compress``), beside the writes.

Compressing 50 MiB takes about a second: done in line with the writes it would hold
up the app's output for that long. So it happens in two steps: the heavy part here, in
a worker thread, from the rotated file (found by its inode, opened without following
a symlink) into a hidden temporary file beside it; then
:meth:`patrol.engine.logfiles.LogSink.finish_compression`, in order with the writes,
renames the copy into the generation's place and deletes the plain file, wherever
rotations have moved it meanwhile. The plain file is only deleted once its compressed
copy is complete, so a crash at any point loses no line (it may leave a temporary file).
"""

from __future__ import annotations

import os
import stat
import zlib

import structlog

from patrol.engine.logfiles import LOG_MODE, LogSink
from patrol.util.safefile import NONBLOCKING, checked, open_for_append

log = structlog.get_logger("patrol.logs")

BLOCK = 256 * 1024
#: zlib's default: about 10x smaller for typical logs at ~50 MB/s of one core
LEVEL = 6


def compress_generation(sink: LogSink, inode: int) -> str | None:
    """Write a gzip copy of the generation ``inode`` of ``sink``'s file; the temporary
    file's name (in the same directory), or None when it is gone or cannot be read."""
    try:
        directory = sink._directory()
    except OSError:
        return None
    temporary = f".{sink.name}.{inode}.gz.tmp"
    try:
        source = _find(sink, directory, inode)
        if source is None:
            return None
        try:
            target = open_for_append(temporary, exclusive=False, mode=LOG_MODE, dir_fd=directory, shown=temporary)
        except OSError:
            os.close(source)
            return None
        try:
            os.ftruncate(target, 0)
            _gzip(source, target)
        except OSError as exc:
            log.warning("cannot compress a rotated log file; it stays as it is", file=sink.path,
                        error=exc.strerror or str(exc))
            try:
                os.unlink(temporary, dir_fd=directory)
            except OSError:
                pass
            return None
        finally:
            os.close(source)
            os.close(target)
        return temporary
    finally:
        os.close(directory)


def _find(sink: LogSink, directory: int, inode: int) -> int | None:
    """The generation with ``inode``, opened for reading (plain files only)."""
    for n in range(2, sink.max_files + 1):
        name = f"{sink.name}.{n}"
        try:
            st = os.lstat(name, dir_fd=directory)
            if st.st_ino != inode or not stat.S_ISREG(st.st_mode):
                continue
            fd = checked(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | NONBLOCKING, dir_fd=directory), name)
        except OSError:
            continue
        if os.fstat(fd).st_ino == inode:
            return fd
        os.close(fd)
    return None


def _gzip(source: int, target: int) -> None:
    """A gzip member of everything ``source`` holds (wbits 31: the gzip format)."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, 31)
    while True:
        block = os.read(source, BLOCK)
        if not block:
            break
        _write_all(target, compressor.compress(block))
    _write_all(target, compressor.flush())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
