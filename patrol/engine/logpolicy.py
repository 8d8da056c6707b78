"""What an app's log files share: the settings a :class:`~patrol.engine.logfiles.LogSink`
is made from, kept once for every app with the same ones (see
:meth:`patrol.engine.logrouter.LogRouter._policy`), so that a sink at rest can be
dropped and made again (:class:`patrol.engine.logwriter.QueuedFile`).
"""

from __future__ import annotations

from typing import Callable

from patrol.engine.logfiles import IDLE_CLOSE_SECONDS, LogSink


class LogPolicy:
    """How an app's log files are written: what every :class:`LogSink` of the apps with
    these settings shares, kept once instead of in each sink. Never changed once made
    (shared by many files; a reload's new settings get policies of their own).

    A quiet app's file is made at its start and closed at once; its sink then holds
    nothing that cannot be made again from the path and this (see
    :class:`patrol.engine.logwriter.QueuedFile`, which drops it while it is idle).
    """

    __slots__ = ("root", "max_bytes", "max_files", "on_rotated", "compress", "on_compress", "owner", "idle_close")

    def __init__(self, root: str, max_bytes: int, max_files: int, *,
                 on_rotated: Callable[["LogSink"], None] | None = None, compress: bool = False,
                 on_compress: Callable[..., None] | None = None, owner: tuple[int, int] | None = None,
                 idle_close: float = IDLE_CLOSE_SECONDS) -> None:
        self.root, self.max_bytes, self.max_files = root, max_bytes, max_files
        self.on_rotated, self.compress, self.owner, self.idle_close = on_rotated, compress, owner, idle_close
        #: told (file, sink, inode) after a rotation when ``compress``: the file is the
        #: QueuedFile the sink writes for (the compression is finished in its order)
        self.on_compress = on_compress

    def sink(self, path: str) -> LogSink:
        """A sink for ``path`` (nothing is opened)."""
        return LogSink(path, self.root, self.max_bytes, self.max_files, on_rotated=self.on_rotated,
                       compress=self.compress, owner=self.owner, idle_close=self.idle_close)


def at_rest(sink: LogSink) -> bool:
    """Closed, and nothing to remember: no failure episode, nothing dropped. Such a
    sink is what :meth:`LogPolicy.sink` makes again (the next open reads the size)."""
    return sink.fd < 0 and sink.failing is None and sink.dropped == 0
