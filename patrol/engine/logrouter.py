"""Every app's output: the pipes the loop reads, the files the writer threads write, the
log directories kept within their limits.

On the loop: reading the pipes (non-blocking), and deciding. Off the loop: every file
operation (:mod:`patrol.engine.logwriter`), compressions, and pruning a log directory
(one walk at a time, each directory at most once per :data:`PRUNE_INTERVAL`). What a
start, a rotation or the end of an instance costs does not grow with the number of
apps: the log directories' limits come from an index built once per config
(:mod:`patrol.engine.logindex`).
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import structlog

from patrol.engine.item_state import LogFiles
from patrol.engine.logfiles import IDLE_CLOSE_SECONDS, LogSink, log_paths
from patrol.engine.logindex import LogIndex
from patrol.engine.logpolicy import LogPolicy
from patrol.engine.logpipes import PIPE_SIZE, READ_SIZE, READS_PER_WAKEUP, InstanceLogs, LogStream, OutputOrder, \
    find_pipe, make_pipe, stream_paths
from patrol.engine.logretention import Pruned, prune
from patrol.engine.logwriter import LogWriter, QueuedFile
from patrol.engine.pipepoll import PipePoll

if TYPE_CHECKING:
    from patrol.plugin.model import AppConfig

log = structlog.get_logger("patrol.logs")

#: a log directory is pruned at most once per this many seconds (requests in between
#: are folded into one prune at the end of the interval)
PRUNE_INTERVAL = 2.0
#: every log directory is checked this often, beside the checks at starts and rotations
RETENTION_EVERY = 3600.0
#: the longest the shutdown waits for the writer threads to write what is queued
SHUTDOWN_WAIT = 5.0


class LogRouter:
    """Every app's output pipes and log files (see the module docstring).

    :meth:`reindex` is handed the apps' configs at start and at each reload.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, configs: Iterable["AppConfig"] = (), *,
                 on_problem: Callable[[str, str | None], None] | None = None, writer: LogWriter | None = None, prune_interval: float = PRUNE_INTERVAL,
                 retention_every: float = RETENTION_EVERY, idle_close: float = IDLE_CLOSE_SECONDS) -> None:
        self.loop = loop
        #: seconds without output after which a log file's descriptor is closed (LogSink)
        self.idle_close = idle_close
        self.index = LogIndex(configs)
        self.writer = writer or LogWriter()
        self.prune_interval = prune_interval
        self.retention_every = retention_every
        #: the pipes being read (one epoll set for all: see PipePoll)
        self._pipes: PipePoll[LogStream] = PipePoll(loop, self._readable)
        #: files of ended streams whose last writes and close are still queued (a shutdown waits for them too)
        self._finishing: set[QueuedFile] = set()
        #: files being written -> the size they may reach (log-max-bytes): never pruned, and
        #: counted at that size. Changed in place on the loop (a copy per start made
        #: starting N apps cost O(N^2)); the pruning thread only looks paths up in it, which
        #: is safe while another thread adds or removes keys (it never iterates it)
        self.writing: dict[str, int] = {}
        #: app id -> the order its last instance's lines arrived in (see OutputOrder)
        self.orders: dict[str, OutputOrder] = {}
        self._pruner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patrol-log-prune")
        self._pruning: dict[str, Future[Pruned]] = {}
        self._last_prune: dict[str, float] = {}
        self._again: dict[str, asyncio.TimerHandle | None] = {}
        self._retention: asyncio.TimerHandle | None = None
        self._closing = False
        #: files whose first operation waits for the end of this loop iteration (see _schedule_soon)
        self._soon: list[QueuedFile] = []
        #: told on the loop when an app's log file cannot be written (the message), or can again (None)
        self.on_problem = on_problem
        # made once: every file's and instance's callbacks are these same objects
        self._on_rotated = self._rotated
        self._on_failing = self._failing
        self._attach_new = partial(self._attach, create=True)
        self._attach_adopted = partial(self._attach, create=False)
        self._on_compress = self._compress
        #: the log settings of apps -> what their sinks share (see _policy)
        self._policies: dict[tuple[str, int, int, bool, tuple[int, int] | None], LogPolicy] = {}

    @property
    def streams(self) -> list[LogStream]:
        """The pipes being read now."""
        return self._pipes.items()

    def reindex(self, configs: Iterable["AppConfig"]) -> None:
        """A reload: read the apps' log settings once (before new apps start), and check
        every log directory against its limits, which may be new."""
        self.index = LogIndex(configs)
        self._policies.clear()  # (those of removed apps' settings go; files keep theirs)
        self.prune_all()

    # -- instances -------------------------------------------------------------------

    def open_instance(self, config: "AppConfig", when_ns: int) -> InstanceLogs:
        """The instance's pipes (its files are made once it runs); raises ``OSError``."""
        instance = InstanceLogs(self._attach_new, config.id, config.log_root,
                                log_paths(config.log_root, config.std_merge, when_ns))
        policy = self._policy(config)
        child_fds: dict[str, int] = {}
        instance.child_fds = child_fds  # (closed by abort if a later pipe fails)
        try:
            for name, path in stream_paths(instance.files):
                read_end, child_end = make_pipe()
                child_fds[name] = child_end
                instance.streams.append(LogStream(name, read_end, self._file(config, path, policy)))
        except BaseException:
            instance.abort()
            raise
        return instance

    def reattach(self, config: "AppConfig", files: LogFiles | None, pipes: Mapping[str, int],
                 pid: int) -> InstanceLogs | None:
        """After a restart of Patrol: read an adopted instance's pipes again, into its files."""
        if files is None or not pipes:
            log.info("no output pipe recorded for the adopted instance (started by an older Patrol, or not "
                     "by Patrol): Patrol does not write or rotate its log files", app=config.id, pid=pid)
            return None
        instance = InstanceLogs(self._attach_adopted, config.id, config.log_root, files)
        policy = self._policy(config)
        for name, path in stream_paths(files):
            inode = pipes.get(name)
            fd = find_pipe(pid, inode) if isinstance(inode, int) else None
            if fd is None:
                log.warning("the adopted process does not have its output pipe as stdout/stderr (redirected, or "
                            "not the process Patrol started): that output is not read", app=config.id, pid=pid,
                            stream=name)
                continue
            instance.streams.append(LogStream(name, fd, self._file(config, path, policy)))
        if not instance.streams:
            return None
        self._attach(instance, create=False)
        log.info("reading the adopted app's output again", app=config.id, pid=pid,
                 streams=[s.name for s in instance.streams])
        return instance

    def _policy(self, config: "AppConfig") -> LogPolicy:
        """What the sinks of the apps with these log settings share. Most apps of a config
        write to one log directory with the same limits: one policy serves them all (kept
        until the next reload's :meth:`reindex`), not one per instance. The callbacks are
        the router's own (what they need to know, the sink and the file carry)."""
        owner = (config.run_as.uid, config.run_as.gid) if config.run_as is not None else None
        key = (config.log_root, config.log_max_bytes, config.log_max_files, config.log_compress, owner)
        policy = self._policies.get(key)
        if policy is None:
            policy = self._policies[key] = LogPolicy(
                config.log_root, config.log_max_bytes, config.log_max_files, on_rotated=self._on_rotated,
                compress=config.log_compress, on_compress=self._on_compress, owner=owner, idle_close=self.idle_close)
        return policy

    def _file(self, config: "AppConfig", path: str, policy: LogPolicy) -> QueuedFile:
        """The stream's file: its sink is made when the writers need it (see QueuedFile)."""
        queued = QueuedFile(path, self.writer, app_id=config.id, policy=policy)
        queued.on_failing = self._on_failing
        return queued

    def _failing(self, queued: QueuedFile, error: str | None) -> None:
        message = None if error is None else f"cannot write the log file {queued.path}: {error} (its output is dropped)"
        if self.on_problem is not None:
            self._to_loop(self.on_problem, queued.app_id, message)

    def _attach(self, instance: InstanceLogs, *, create: bool) -> None:
        order = self.orders[instance.app_id] = OutputOrder()
        for stream in instance.streams:
            stream.order = order
            self.writing[stream.file.path] = stream.file.max_bytes
            link = self.index.link_name(instance.app_id, stream.name) if create else None
            stream.file.call(_Opening(stream.file, link), schedule_with=self._schedule_soon)
            stream.instance = instance
            self._pipes.add(stream.fd, stream)
        self.prune_soon(instance.root)

    def _schedule_soon(self, queued: QueuedFile) -> None:
        """Hand new files to the writers once the loop is done with this iteration.

        Starting 500 apps is one loop iteration; waking a writer thread at each start to
        create two files makes it fight the loop for the GIL between every spawn (a third
        of the start burst's time). Batched, the files are made while the children start.
        """
        if not self._soon:
            self.loop.call_soon(self._flush_soon)
        self._soon.append(queued)

    def _flush_soon(self) -> None:
        soon, self._soon = self._soon, []
        for queued in soon:
            self.writer.schedule(queued)

    def _readable(self, stream: LogStream) -> None:
        if not stream.read_some(READS_PER_WAKEUP):
            self._end(stream)

    def _end(self, stream: LogStream) -> None:
        """End of file: every process holding the pipe has exited. The files are done."""
        self._pipes.remove(stream.fd)
        os.close(stream.fd)
        instance = stream.instance
        assert instance is not None  # set when it was attached, as every stream read is
        instance.ended(stream.name)
        self._finishing.add(stream.file)
        stream.file.call(partial(self._close_file, instance, stream.file), last=True)

    def _close_file(self, instance: InstanceLogs, queued: QueuedFile, sink: LogSink) -> None:
        """In a writer thread, after everything queued before it: close, then tell the loop."""
        sink.close()
        if queued.dropped:
            log.warning("log output was dropped", app=instance.app_id, file=sink.path, dropped_bytes=queued.dropped)
        self._to_loop(self._closed, instance.root, sink.path, queued)

    def _closed(self, root: str, path: str, queued: QueuedFile) -> None:
        self._finishing.discard(queued)
        self.writing.pop(path, None)
        self.prune_soon(root)

    def order(self, app_id: str, lines: int) -> list[tuple[str, int]]:
        """How the last ``lines`` lines of the app's last instance interleave (OutputOrder)."""
        order = self.orders.get(app_id)
        return order.last(lines) if order is not None else []

    def is_writing(self, path: str) -> bool:
        """Is ``path`` a file some instance's output may still go to? (A follower reads an
        ended instance's file to its end before it moves on to the next instance's.)"""
        return path in self.writing

    # -- rotation and compression (called in writer threads) -------------------------

    def _rotated(self, sink: LogSink) -> None:
        self._to_loop(self.prune_soon, sink.root)

    def _compress(self, queued: QueuedFile, sink: LogSink, inode: int) -> None:
        def job() -> None:
            from patrol.engine.logcompress import compress_generation  # (only where logs are compressed)

            temporary = compress_generation(sink, inode)
            if temporary is not None:
                queued.call(lambda s: s.finish_compression(temporary, inode))

        self.writer.compress(job)

    def _to_loop(self, callback: Callable[..., None], *args: object) -> None:
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: Patrol has stopped

    # -- upkeep ----------------------------------------------------------------------

    def tick(self) -> None:
        """Reopen files deleted or moved away by someone else, or that could not be written."""
        self.writer.check_all([stream.file for stream in self.streams])

    def prune_all(self) -> None:
        """Check every log directory now, and again in :attr:`retention_every` seconds."""
        for root, directory in self.index.directories.items():
            if directory.limited:
                self.prune_soon(root)
        if self._retention is not None:
            self._retention.cancel()
        if not self._closing:
            self._retention = self.loop.call_later(self.retention_every, self.prune_all)

    def prune_soon(self, root: str) -> None:
        """Bring ``root`` within its limits in the background: one walk at a time, each
        directory at most once per :attr:`prune_interval` seconds."""
        directory = self.index.get(root)
        if not directory.limited or self._closing:
            return
        if root in self._pruning or root in self._again:
            self._again.setdefault(root, None)
            return
        wait = self._last_prune.get(root, -self.prune_interval) + self.prune_interval - time.monotonic()
        if wait > 0:
            self._again[root] = self.loop.call_later(wait, self._due, root)
            return
        self._last_prune[root] = time.monotonic()
        try:
            future = self._pruner.submit(prune, root, directory.budget, self.writing, directory.max_age_days)
        except RuntimeError:  # shutting down
            return
        self._pruning[root] = future
        future.add_done_callback(lambda f: self._to_loop(self._pruned, root, f))

    def _due(self, root: str) -> None:
        self._again.pop(root, None)
        self.prune_soon(root)

    def _pruned(self, root: str, future: Future[Pruned]) -> None:
        self._pruning.pop(root, None)
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - a failed walk is retried at the next event
            log.error("pruning log files failed", directory=root, error=repr(exc))
        else:
            if result.removed or result.emptied:
                directory = self.index.get(root)
                log.info("pruned old log files", directory=root, files=len(result.removed), freed_bytes=result.freed,
                         left_bytes=result.total, budget=directory.budget, max_age_days=directory.max_age_days,
                         emptied_directories=result.emptied)
        if root in self._again and self._again[root] is None:
            del self._again[root]
            self.prune_soon(root)

    def stop_pruning(self) -> None:
        """Shutdown begins: no more retention walks. The instances ending now would each
        ask for one (a walk of the directory, in a thread the interpreter waits for at
        exit: ~80 ms of a shutdown of 500 apps); the next start walks every directory."""
        self._closing = True
        for handle in [self._retention, *self._again.values()]:
            if handle is not None:
                handle.cancel()
        self._again.clear()

    async def close(self) -> None:
        """Shutdown: move what the pipes still hold to the files, wait (a bounded time)
        for the writer threads to write it, then close everything."""
        self.stop_pruning()
        streams = self.streams
        files = [stream.file for stream in streams] + list(self._finishing)
        for stream in streams:
            stream.read_some(2 * PIPE_SIZE // READ_SIZE)
            self._end(stream)
        self._pipes.close()
        deadline = time.monotonic() + SHUTDOWN_WAIT
        await self.loop.run_in_executor(None, _wait_idle, files, deadline)  # a thread: never the loop
        self.writer.close()
        self._pruner.shutdown(wait=False, cancel_futures=True)


class _Opening:
    """A file's first operation: :func:`_create` (``link``: a new instance's current-log
    link) or :func:`_reopen` (None: an adopted instance). One small object, not a
    ``partial`` (with its tuple and dict): a start burst queues one per file at once."""

    __slots__ = ("queued", "link")

    def __init__(self, queued: QueuedFile, link: str | None) -> None:
        self.queued, self.link = queued, link

    def __call__(self, sink: LogSink) -> None:
        if self.link is None:
            _reopen(self.queued, sink)
        else:
            _create(self.link, self.queued, sink)


def _create(link: str, queued: QueuedFile, sink: LogSink) -> None:
    """The instance's program runs: make its file (new) and point the current-log link at
    it. The file stays open only if output waits already: most apps write nothing most
    of the time, and a descriptor held per file is copied at every spawn."""
    if sink.make(exclusive=True, keep_open=queued.pending()):
        sink.update_link(link)


def _reopen(queued: QueuedFile, sink: LogSink) -> None:
    """An adopted instance: its file must be writable (or the retry episode starts and the
    problem is reported: the pipe is drained either way); kept open if output waits."""
    if sink.reopen() and not queued.pending():
        sink.close()


def _wait_idle(files: list[QueuedFile], deadline: float) -> None:
    for queued in files:
        if not queued.wait_idle(max(0.0, deadline - time.monotonic())):
            log.warning("the log writes did not finish in time at shutdown", file=queued.path)
            return
