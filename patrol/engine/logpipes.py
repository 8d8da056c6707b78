"""App output through pipes Patrol owns: the app writes into a pipe, the loop reads it
and hands it to the writer threads that append it to the instance's log files
(:mod:`patrol.engine.logwriter`, :class:`patrol.engine.logfiles.LogSink`).

Why Patrol sits in the data path (as supervisord, s6-log, journald and process-compose
do): a file handed to the app cannot be rotated without the app's help (copytruncate
copies a moving target, loses what is written meanwhile, and cannot bound the disk);
with a pipe, rotation is a rename and a reopen on Patrol's side, a full disk drops
output instead of blocking or killing the app, and ``std-merge`` gets the exact order
of writes (both streams are one pipe).

Surviving a crash of Patrol: the child's stdout/stderr is a *read-write* descriptor of
the pipe (opened through ``/proc/self/fd/<write end>``), so the app itself always counts
as a reader. When Patrol dies, the app's writes never get SIGPIPE/EPIPE: they fill the
pipe (raised to :data:`PIPE_SIZE`) and then wait. A restarted Patrol finds the very same
pipe again through ``/proc/<pid>/fd`` (checked against the pipe inode recorded in the
state file) and drains what was held. The trade: while Patrol is down an app may write
up to the pipe size, then its writes block until Patrol is back.
"""

from __future__ import annotations

import fcntl
import os
from collections import deque
from types import MappingProxyType
from typing import Callable, Mapping

import structlog

from patrol.engine.item_state import LogFiles
from patrol.engine.logfiles import LogSink
from patrol.engine.logwriter import QueuedFile
from patrol.engine.output_lines import OutputLines
from patrol.util.safefile import open_pipe

log = structlog.get_logger("patrol.logs")

#: bytes an app may write while nobody reads (Patrol restarting) before its writes wait
PIPE_SIZE = 1024 * 1024
#: one read, and the most reads per wake-up (so one chatty app cannot starve the others)
READ_SIZE = 64 * 1024
READS_PER_WAKEUP = 4
#: runs of lines of one stream remembered per instance (see OutputOrder)
ORDER_RUNS = 4096

_pipe_size_warned = False
#: an instance's child ends once spawned (or before any is made): shared, not an empty
#: dict kept per running app
NO_FDS: Mapping[str, int] = MappingProxyType({})


def make_pipe() -> tuple[int, int]:
    """A pipe for one output stream: (Patrol's non-blocking read end, the child's end).

    The child's end is read-write (see the module docstring): the child never sees a
    pipe without a reader, so Patrol's death cannot kill it by SIGPIPE.
    """
    global _pipe_size_warned
    read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        child_end = os.open(f"/proc/self/fd/{write_end}", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    try:
        fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError as exc:
        if not _pipe_size_warned:
            _pipe_size_warned = True
            log.warning("cannot enlarge app output pipes (see fs.pipe-max-size and fs.pipe-user-pages-soft): "
                        "an app can write less while Patrol restarts before its writes wait",
                        wanted=PIPE_SIZE, got=fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ), error=exc.strerror)
    return read_end, child_end


def find_pipe(pid: int, inode: int) -> int | None:
    """Open the pipe ``pipe:[inode]`` that process ``pid`` has as stdout or stderr, for
    reading; None if it has not.

    Only descriptors 1 and 2 are looked at: a pipe the app made for itself must never be
    read by Patrol, even if its inode number happens to be the recorded one (numbers are
    reused once a pipe is gone). The opened descriptor is checked to be that very pipe.
    """
    target = f"pipe:[{inode}]"
    for fd_number in (1, 2):
        path = f"/proc/{pid}/fd/{fd_number}"
        try:
            if os.readlink(path) != target:
                continue
        except OSError:
            continue
        fd = open_pipe(path, inode)
        if fd is not None:
            return fd
    return None


class LogStream:
    """One pipe Patrol reads and the file it goes to."""

    __slots__ = ("name", "fd", "file", "inode", "instance", "order")

    def __init__(self, name: str, fd: int, file: QueuedFile) -> None:
        self.name = name  # stdout, stderr or stdmerge
        self.fd = fd
        self.file = file
        self.inode = os.fstat(fd).st_ino
        #: whose pipe it is, once read: its output listeners are told every chunk read, on
        #: the loop, right after the read (a reference, not a bound method per stream)
        self.instance: InstanceLogs | None = None
        self.order: OutputOrder | None = None  # the instance's, shared by its streams

    @property
    def sink(self) -> LogSink:
        return self.file.sink

    def read_some(self, reads: int) -> bool:
        """Move what the pipe holds to the file's queue, at most ``reads`` reads; False at
        end of file."""
        for _ in range(reads):
            try:
                data = os.read(self.fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if not data:
                return False
            self.file.write(data)
            if self.order is not None:
                self.order.saw(self.name, data.count(b"\n"))
            if self.instance is not None:
                self.instance.heard(self.name, data)
        return True


class OutputOrder:
    """In which order an instance's lines arrived, stream by stream, as far back as
    :data:`ORDER_RUNS` runs of one stream: separate files keep no common order, so
    ``patrol logs`` merges the last lines of stdout and stderr by this.

    A line counts where its newline arrived (the loop's reads of the two pipes are the
    finest order Patrol sees). Kept in memory only, for the last instance of each app.
    """

    __slots__ = ("runs",)
    #: none seen yet (an app that writes nothing keeps no deque: one is ~600 bytes)
    EMPTY: deque[tuple[str, int]] = deque(maxlen=0)

    def __init__(self) -> None:
        self.runs: deque[tuple[str, int]] = self.EMPTY

    def saw(self, stream: str, lines: int) -> None:
        if not lines:
            return
        runs = self.runs
        if runs is self.EMPTY:
            runs = self.runs = deque(maxlen=ORDER_RUNS)
        if runs and runs[-1][0] == stream:
            runs[-1] = (stream, runs[-1][1] + lines)
        else:
            runs.append((stream, lines))

    def last(self, count: int) -> list[tuple[str, int]]:
        """The runs of the last ``count`` lines, oldest first (fewer when not known)."""
        found: list[tuple[str, int]] = []
        for stream, lines in reversed(self.runs):
            if count <= 0:
                break
            found.append((stream, min(lines, count)))
            count -= lines
        found.reverse()
        return found


class InstanceLogs:
    """The pipes and files of one app instance.

    The files are created only once the program runs (:meth:`start`), by the writer
    threads: a start that fails before the program runs (a missing binary, a working
    directory that is not there) leaves no file and no directory behind.
    """

    __slots__ = ("_attach", "app_id", "root", "files", "streams", "child_fds", "_output")

    def __init__(self, attach: Callable[["InstanceLogs"], None], app_id: str, root: str, files: LogFiles) -> None:
        self._attach = attach  # the router's: read the pipes, create the files
        self.app_id = app_id
        self.root = root
        self.files = files
        self.streams: list[LogStream] = []
        #: stream name -> the child's end, until spawned (the router fills a dict of its own)
        self.child_fds: Mapping[str, int] = NO_FDS
        #: who listens to the run's output lines (the log probe), made when someone does:
        #: most runs have no listener, and an OutputLines is ~170 bytes per app
        self._output: OutputLines | None = None

    @property
    def output(self) -> OutputLines:
        """The listeners of the run's output lines (made on first use)."""
        if self._output is None:
            self._output = OutputLines()
        return self._output

    def heard(self, stream: str, data: bytes) -> None:
        """Bytes read from ``stream``'s pipe, for the listeners (if there are any)."""
        if self._output is not None:
            self._output.feed(stream, data)

    def ended(self, stream: str) -> None:
        """End of ``stream``'s pipe: its unfinished line is finished (if anyone listens)."""
        if self._output is not None:
            self._output.end(stream)

    @property
    def pipes(self) -> dict[str, int]:
        """Stream name -> pipe inode: what the state file needs to find the pipes again."""
        return {s.name: s.inode for s in self.streams}

    @property
    def child_stdout(self) -> int:
        return self.child_fds.get("stdmerge", self.child_fds.get("stdout", -1))

    @property
    def child_stderr(self) -> int:
        return self.child_fds.get("stdmerge", self.child_fds.get("stderr", -1))

    def close_child_ends(self) -> None:
        """After the spawn: the child holds them now (Patrol must not, or it never sees EOF)."""
        fds, self.child_fds = self.child_fds, NO_FDS
        for fd in fds.values():
            os.close(fd)

    def start(self) -> None:
        """The program runs: create its files (in the writer threads) and read its pipes."""
        self._attach(self)

    def abort(self) -> None:
        """The program could not be started: close the pipes (no file was made)."""
        self.close_child_ends()
        for stream in self.streams:
            os.close(stream.fd)
        self.streams.clear()


def stream_paths(files: LogFiles) -> list[tuple[str, str]]:
    if files.merged:
        return [("stdmerge", files.stdout)]
    return [("stdout", files.stdout), ("stderr", files.stderr)]
