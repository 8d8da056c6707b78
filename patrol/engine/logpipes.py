"""App output through pipes Patrol owns: the app writes into a pipe, the loop reads it
and appends it to the instance's log files (:class:`patrol.logfiles.LogSink`).

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

import asyncio
import errno
import fcntl
import os
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import structlog

from patrol.engine.logfiles import LogSink, Pruned, log_paths, prune
from patrol.engine.output_lines import OutputLines
from patrol.util.safefile import open_pipe
from patrol.engine.item_state import LogFiles

if TYPE_CHECKING:
    from patrol.plugin.model import AppConfig

log = structlog.get_logger("patrol.logs")

#: bytes an app may write while nobody reads (Patrol restarting) before its writes wait
PIPE_SIZE = 1024 * 1024
#: one read, and the most reads per wake-up (so one chatty app cannot starve the others)
READ_SIZE = 64 * 1024
READS_PER_WAKEUP = 4

_pipe_size_warned = False


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

    def __init__(self, name: str, fd: int, sink: LogSink) -> None:
        self.name = name  # stdout, stderr or stdmerge
        self.fd = fd
        self.sink = sink
        self.inode = os.fstat(fd).st_ino
        #: told every chunk read, on the loop, right after the read (the run's output listeners)
        self.on_data: Callable[[str, bytes], None] | None = None

    def read_some(self, reads: int) -> bool:
        """Move what the pipe holds to the file, at most ``reads`` reads; False at end of file."""
        for _ in range(reads):
            try:
                data = os.read(self.fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if not data:
                return False
            self.sink.write(data)
            if self.on_data is not None:
                self.on_data(self.name, data)
        return True


class InstanceLogs:
    """The pipes and files of one app instance."""

    def __init__(self, router: "LogRouter", app_id: str, root: str, files: LogFiles) -> None:
        self.router = router
        self.app_id = app_id
        self.root = root
        self.files = files
        self.streams: list[LogStream] = []
        self.child_fds: dict[str, int] = {}  # stream name -> the child's end, until spawned
        #: who listens to the run's output lines (the log probe): fed from the pipe reads
        self.output = OutputLines()

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
        for fd in self.child_fds.values():
            os.close(fd)
        self.child_fds.clear()

    def start(self) -> None:
        self.router._attach(self)

    def abort(self) -> None:
        """The program could not be started: close everything and remove the empty files."""
        self.close_child_ends()
        for stream in self.streams:
            os.close(stream.fd)
            stream.sink.close()
            stream.sink.remove_if_empty()
            self.router.writing.pop(stream.sink.path, None)
        self.streams.clear()


class LogRouter:
    """Every app's output pipes: reads them on the loop, prunes log directories to budget.

    ``configs`` gives the apps' current configs (the budget of a log directory shared by
    several apps is the smallest one set among them).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, configs: Callable[[], Iterable["AppConfig"]]) -> None:
        self.loop = loop
        self.configs = configs
        self.streams: set[LogStream] = set()
        self._owner: dict[LogStream, InstanceLogs] = {}
        #: files being written -> the size they may reach (log-max-bytes): never pruned, and
        #: counted at that size (read by the pruning thread, changed on the loop)
        self.writing: dict[str, int] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patrol-log-prune")
        self._pruning: dict[str, Future[Pruned]] = {}
        self._again: set[str] = set()
        self._closing = False

    # -- instances -------------------------------------------------------------------

    def open_instance(self, config: "AppConfig", when_ns: int) -> InstanceLogs:
        """Create the instance's files and pipes; raises ``OSError`` (nothing left behind)."""
        for attempt in range(3):
            instance = InstanceLogs(self, config.id, config.log_root,
                                    log_paths(config.log_root, config.std_merge, when_ns + attempt))
            try:
                self._open(instance, config)
                return instance
            except FileExistsError:
                instance.abort()
            except BaseException:
                instance.abort()
                raise
        raise FileExistsError(errno.EEXIST, "log files of that start time exist already", instance.files.stdout)

    def _open(self, instance: InstanceLogs, config: "AppConfig") -> None:
        for name, path in _stream_paths(instance.files):
            sink = self._sink(config, path)
            self.writing[path] = config.log_max_bytes
            try:
                sink.open(exclusive=True)
            except BaseException:
                self.writing.pop(path, None)
                raise
            try:
                read_end, child_end = make_pipe()
            except BaseException:
                sink.close()
                sink.remove_if_empty()
                self.writing.pop(path, None)
                raise
            instance.streams.append(LogStream(name, read_end, sink))
            instance.child_fds[name] = child_end

    def reattach(self, config: "AppConfig", files: LogFiles | None, pipes: Mapping[str, int],
                 pid: int) -> InstanceLogs | None:
        """After a restart of Patrol: read an adopted instance's pipes again, into its files."""
        if files is None or not pipes:
            log.info("no output pipe recorded for the adopted instance (started by an older Patrol, or not "
                     "by Patrol): Patrol does not write or rotate its log files", app=config.id, pid=pid)
            return None
        instance = InstanceLogs(self, config.id, config.log_root, files)
        for name, path in _stream_paths(files):
            inode = pipes.get(name)
            fd = find_pipe(pid, inode) if isinstance(inode, int) else None
            if fd is None:
                log.warning("the adopted process does not have its output pipe as stdout/stderr (redirected, or "
                            "not the process Patrol started): that output is not read", app=config.id, pid=pid,
                            stream=name)
                continue
            sink = self._sink(config, path)
            self.writing[path] = config.log_max_bytes
            sink.reopen()  # or the retry episode starts: the pipe is drained either way
            instance.streams.append(LogStream(name, fd, sink))
        if not instance.streams:
            return None
        instance.start()
        log.info("reading the adopted app's output again", app=config.id, pid=pid,
                 streams=[s.name for s in instance.streams])
        return instance

    def _sink(self, config: "AppConfig", path: str) -> LogSink:
        owner = (config.run_as.uid, config.run_as.gid) if config.run_as is not None else None
        return LogSink(path, config.log_root, config.log_max_bytes, config.log_max_files,
                       on_rotated=partial(self._rotated, config.log_root), owner=owner)

    def _rotated(self, root: str, sink: LogSink) -> None:
        self.prune_soon(root)

    def _attach(self, instance: InstanceLogs) -> None:
        for stream in instance.streams:
            stream.on_data = instance.output.feed
            self.streams.add(stream)
            self._owner[stream] = instance
            self.loop.add_reader(stream.fd, self._readable, stream)
        self.prune_soon(instance.root)

    def _readable(self, stream: LogStream) -> None:
        if not stream.read_some(READS_PER_WAKEUP):
            self._end(stream)

    def _end(self, stream: LogStream) -> None:
        """End of file: every process holding the pipe has exited. The files are done."""
        self.loop.remove_reader(stream.fd)
        os.close(stream.fd)
        stream.sink.close()
        self.streams.discard(stream)
        self.writing.pop(stream.sink.path, None)
        instance = self._owner.pop(stream)
        instance.output.end(stream.name)
        if stream.sink.dropped:
            log.warning("log output was dropped", app=instance.app_id, file=stream.sink.path,
                        dropped_bytes=stream.sink.dropped)
        self.prune_soon(instance.root)

    # -- upkeep ----------------------------------------------------------------------

    def tick(self) -> None:
        """Reopen files deleted or moved away by someone else, or that could not be written."""
        for stream in list(self.streams):
            stream.sink.check()

    def prune_all(self) -> None:
        for root in {c.log_root for c in self.configs()}:
            self.prune_soon(root)

    def budget(self, root: str) -> int:
        budgets = [c.log_max_total_bytes for c in self.configs() if c.log_root == root and c.log_max_total_bytes]
        return min(budgets, default=0)

    def prune_soon(self, root: str) -> None:
        """Bring ``root`` within its budget in the background (one directory walk at a time)."""
        budget = self.budget(root)
        if not budget or self._closing:
            return
        if root in self._pruning:
            self._again.add(root)
            return
        try:
            future = self._executor.submit(prune, root, budget, self.writing)
        except RuntimeError:  # shutting down
            return
        self._pruning[root] = future
        future.add_done_callback(partial(self._from_thread, root))

    def _from_thread(self, root: str, future: Future[Pruned]) -> None:
        try:
            self.loop.call_soon_threadsafe(self._pruned, root, future)
        except RuntimeError:
            pass  # the loop is closed: Patrol has stopped

    def _pruned(self, root: str, future: Future[Pruned]) -> None:
        self._pruning.pop(root, None)
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a failed walk is retried at the next event
            log.error("pruning log files failed", directory=root, error=repr(exc))
        else:
            if result.removed:
                log.info("pruned old log files", directory=root, files=len(result.removed), freed_bytes=result.freed,
                         left_bytes=result.total, budget=self.budget(root))
        if root in self._again:
            self._again.discard(root)
            self.prune_soon(root)

    def close(self) -> None:
        """Shutdown: move what the pipes still hold to the files, then close everything."""
        self._closing = True
        for stream in list(self.streams):
            stream.read_some(2 * PIPE_SIZE // READ_SIZE)
            self._end(stream)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _stream_paths(files: LogFiles) -> list[tuple[str, str]]:
    if files.merged:
        return [("stdmerge", files.stdout)]
    return [("stdout", files.stdout), ("stderr", files.stderr)]

