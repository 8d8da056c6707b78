"""Writing log files off the loop: a bounded queue per file, a few writer threads.

The loop reads the apps' pipes (that never blocks: they are non-blocking) and hands
what it read to the file's :class:`QueuedFile`; writer threads append it to the file,
rotate, create and reopen files, update the current-log symlinks. A hung or very slow
disk then holds writer threads, never the loop: supervision, the API and the other
apps' pipes go on.

* **Order, exactly once:** the operations of one file (data, open, check, close) run in
  the order they were queued, by one thread at a time (a file is scheduled at most once
  until its queue is empty), so each byte the loop read is written once, in order.
* **Bounded:** a file's queue holds at most ``limit`` bytes. Beyond that the data is
  dropped and counted (never waiting: neither the loop nor the app may block on the
  disk), logged once per episode like a write error.
* Control operations (open, check, close, finishing a compression) are never dropped
  and are coalesced where repeating them is useless (a pending check).
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable, Iterator

import structlog

from patrol.engine.logchecks import Checks
from patrol.engine.logfiles import LogSink
from patrol.engine.logpolicy import LogPolicy, at_rest

log = structlog.get_logger("patrol.logs")

#: bytes queued per file at most while its writes are slow (then output is dropped)
QUEUE_BYTES = 4 * 1024 * 1024
#: writer threads: a file stuck on a hung disk holds one of them
WRITER_THREADS = 4
Operation = Callable[[LogSink], None]


class LogWriter:
    """The writer threads every log file shares (and the compressions, beside them).

    The files to serve wait in one queue of the writer threads' own rather than as
    ``ThreadPoolExecutor`` work: a start burst hands thousands of new files over at once,
    and a Future (with its Condition, lock and waiter deque, ~1 KB) per file left the
    allocator's arenas that much bigger for good, for a result nobody reads.
    """

    def __init__(self, threads: int = WRITER_THREADS) -> None:
        self._threads = threads
        self._workers: list[threading.Thread] = []
        self._files: queue.SimpleQueue[QueuedFile | Checks | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # released by a writer each time it finished a file
        self._lock = threading.Lock()  # closing, against scheduling from a writer or compressing thread
        #: every file's queue (QueuedFile): one lock for all, not one per file (thousands
        #: of files, ~90 bytes each), held only to move an item in or out of a queue,
        #: never while writing, opening or closing
        self.file_lock = threading.Lock()
        self._compress = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patrol-log-compress")
        self.closed = False

    def schedule(self, queued: "QueuedFile | Checks") -> None:
        with self._lock:
            if self.closed:  # shut down: nothing more is written
                queued.abandon()
                return
            self._files.put(queued)
            # a new writer only when none is idle (as a thread pool does), up to the limit
            if not self._idle.acquire(blocking=False) and len(self._workers) < self._threads:
                worker = threading.Thread(target=self._work, name=f"patrol-log-writer_{len(self._workers)}")
                self._workers.append(worker)
                worker.start()

    def _work(self) -> None:
        while (queued := self._files.get()) is not None:
            try:
                queued.run()
            except Exception:  # noqa: BLE001 - a bug here must not stop the other files' writes
                log.exception("log writer failed", file=queued.path)
            self._idle.release()

    def check_all(self, files: list["QueuedFile"]) -> None:
        """Check every file for deletion or a move, in one writer job.

        The tick checks every log file; a job per file woke a writer thread per file
        (1,000 wake-ups per tick at 500 apps, an idle Patrol's only work). In one job,
        each idle file is claimed just before its check and let go after it, so a check
        that hangs (a stuck mount) holds its own file only: the others' writes go on in
        the other writers, and only their checks wait.
        """
        if files:
            self.schedule(Checks(files))

    def compress(self, job: Callable[[], None]) -> None:
        try:
            self._compress.submit(job)
        except RuntimeError:
            pass  # shutting down: the generation stays plain

    def close(self) -> None:
        """What is queued is still written (each writer ends after it); nothing new is."""
        with self._lock:
            self.closed = True
            for _ in self._workers:
                self._files.put(None)
        self._compress.shutdown(wait=False, cancel_futures=True)


class QueuedFile:
    """One log file as the loop sees it: operations are queued, the writers do them.

    Thousands of these live at once (one per stream of every running app) and most are
    idle most of the time, so an idle file holds no queue and no event: the queue exists
    while something is queued, the event only while someone waits for the file to be idle.
    """

    __slots__ = ("_sink", "_policy", "_path", "writer", "app_id", "limit", "_lock", "_ops", "_queued", "_scheduled",
                 "_check_pending", "overflowed", "_overflowing", "_idle", "on_failing", "ended")

    def __init__(self, sink: LogSink | str, writer: LogWriter, limit: int = QUEUE_BYTES, *, app_id: str = "",
                 policy: LogPolicy | None = None) -> None:
        """``sink``: the file's sink, kept for good; or its path with the ``policy`` that
        makes its sink, which is then made when an operation needs it and dropped again
        while the file is closed and idle (see :meth:`_rest`)."""
        if isinstance(sink, str):
            if policy is None:
                raise ValueError("a QueuedFile given a path needs the policy that makes its sink")
            self._sink: LogSink | None = None
            self._path = sink
        else:
            self._sink, self._path = sink, sink.path
        self._policy = policy if self._sink is None else None
        self.writer = writer
        self.app_id = app_id  # whose output it is (for messages)
        self.limit = limit
        self._lock = writer.file_lock  # shared by every file of the writer
        #: what waits, in order (None: nothing). A list, taken whole by the writer: a start
        #: burst queues a file creation for thousands of files at once, and a deque is
        #: ~760 bytes from its first item (its first block), a list of one item ~90
        self._ops: list[bytes | Operation] | None = None
        self._queued = 0  # bytes waiting
        self._scheduled = False
        self._check_pending = False
        self.overflowed = 0  # bytes dropped because the queue was full, in total
        self._overflowing = False
        self._idle: threading.Event | None = None  # made by wait_idle, set once the file is idle
        self.ended = False  # its last operation (the close) is queued: nothing is checked after it
        #: told (in a writer thread) when writing the file starts or stops failing: the file, and
        #: the error or None
        self.on_failing: Callable[["QueuedFile", str | None], None] | None = None

    @property
    def path(self) -> str:
        return self._path

    @property
    def max_bytes(self) -> int:
        """The size the file may reach (log-max-bytes; 0: unbounded)."""
        return self._policy.max_bytes if self._policy is not None else self.sink.max_bytes

    @property
    def sink(self) -> LogSink:
        """The file's sink, made if it is at rest. Only in the writer thread running the
        file, or while the file is not scheduled (tests, before the program starts)."""
        sink = self._sink
        if sink is None:
            policy = self._policy
            assert policy is not None  # (a file without a policy keeps its sink)
            sink = self._sink = policy.sink(self._path)
            if policy.compress and policy.on_compress is not None:
                sink.on_compress = partial(policy.on_compress, self)
        return sink

    @sink.setter
    def sink(self, sink: LogSink) -> None:
        """Replace the sink (tests): kept for good from now on."""
        self._sink, self._policy = sink, None

    def _rest(self) -> None:
        """Under the lock, in the writer that ran the file, now idle: a sink made from the
        policy that is closed with nothing to remember is dropped (made again by the next
        operation that needs it). Thousands of files are quiet: their sinks (~190 bytes
        each) and compression hooks would otherwise live as long as their apps."""
        if self._policy is not None and self._sink is not None and at_rest(self._sink):
            self._sink = None

    @property
    def dropped(self) -> int:
        """Bytes lost, in the queue (writers behind) or at the disk (write errors)."""
        return self.overflowed + (self._sink.dropped if self._sink is not None else 0)

    def write(self, data: bytes) -> None:
        """Queue output (on the loop); dropped and counted when the queue is full."""
        with self._lock:
            if self._queued + len(data) > self.limit:
                self.overflowed += len(data)
                if not self._overflowing:
                    self._overflowing = True
                    log.warning("the log file's writes are behind (a slow or hung disk?); dropping the app's "
                                "output until they catch up", file=self._path, queued_bytes=self._queued)
                return
            if self._overflowing:
                self._overflowing = False
                log.info("the log file's writes caught up", file=self._path, dropped_bytes=self.overflowed)
            self._queued += len(data)
            schedule = self._enqueue(data)
        if schedule:
            self.writer.schedule(self)

    def call(self, operation: Operation, *, schedule_with: Callable[["QueuedFile"], None] | None = None,
             last: bool = False) -> None:
        """Queue an operation on the file, in order with the data (never dropped).

        ``schedule_with``: who hands the file to the writers if it needs it (the log
        router batches the files of a start burst: a writer thread woken per start
        competes with the loop for the GIL while the loop has hundreds more to spawn).
        Data and operations queued meanwhile wait behind it, in order. ``last``: the
        file's last operation (its close): checks asked for later are dropped (the
        tick's checks run in a writer job, after the loop may have ended the file).
        """
        with self._lock:
            self.ended = self.ended or last
            schedule = self._enqueue(operation)
        if schedule:
            (schedule_with or self.writer.schedule)(self)

    def check(self, *, here: bool = False) -> None:
        """Queue a check for a deleted or moved file, unless one is pending already.

        ``here`` (in a writer thread: :meth:`LogWriter.check_all`): an idle file is
        checked at once in this thread; a busy one gets the check behind its writes.
        """
        with self._lock:
            if self._check_pending or self.ended:  # a check after the close would reopen the file
                return
            self._check_pending = True
            schedule = self._enqueue(_CHECK)
        if schedule:
            (QueuedFile.run if here else self.writer.schedule)(self)

    def pending(self) -> bool:
        """Is output waiting to be written (in the writer running the file: behind the
        current operation)?"""
        with self._lock:
            return self._queued > 0

    def _enqueue(self, item: bytes | Operation) -> bool:
        """Under the lock: queue ``item``; True when the file must be handed to a writer."""
        self._queue(item)
        return self._schedule()

    def _queue(self, item: bytes | Operation) -> None:
        if self._ops is None:
            self._ops = [item]
        else:
            self._ops.append(item)

    def _became_idle(self) -> None:
        """Under the lock: nothing is queued or running; wake whoever waits for that."""
        self._ops = None
        self._scheduled = False
        if self._idle is not None:
            self._idle.set()
            self._idle = None

    def _schedule(self) -> bool:
        if self._scheduled:
            return False
        self._scheduled = True
        return True

    def run(self) -> None:
        """In a writer thread: do what is queued, in order, until the queue is empty."""
        while True:
            with self._lock:  # take what is queued now; what is queued meanwhile comes after it
                batch, self._ops = self._ops, None
                if not batch:
                    self._rest()
                    self._became_idle()
                    return
            for item in _runs(batch):
                if isinstance(item, bytes):
                    with self._lock:  # counted as waiting until its write begins (see pending())
                        self._queued -= len(item)
                self._do(item)

    def _do(self, item: bytes | Operation) -> None:
        """One operation, or one write of the data queued in a row."""
        failing = self._sink.failing if self._sink is not None else None
        try:
            if item is _CHECK:
                self._check_now()
            elif isinstance(item, bytes):
                self.sink.write(item)
            else:
                item(self.sink)
        except Exception:  # noqa: BLE001 - a bug here must not stop the other files' writes
            log.exception("log file operation failed", file=self._path)
        now = self._sink.failing if self._sink is not None else None
        if now != failing and self.on_failing is not None:
            self.on_failing(self, now)

    def settled(self, listed: Callable[[str], bool]) -> bool:
        """Does the tick's check have nothing to do here: a file that ended, or one at rest
        (closed, nothing queued) whose name ``listed`` finds in its directory? Read without
        the lock: a file that becomes busy meanwhile is checked at the next tick."""
        return self.ended or (self._sink is None and not self._scheduled and listed(self._path))

    def _check_now(self) -> None:
        """The tick's check. A file at rest is closed and healthy: only whether it is still
        there is looked at, without making its sink (every file is checked each tick)."""
        with self._lock:
            self._check_pending = False
        if self._sink is None and os.path.lexists(self._path):
            return
        self.sink.check()

    def abandon(self) -> None:
        with self._lock:
            self._queued = 0
            self._became_idle()

    def wait_idle(self, timeout: float) -> bool:
        """For tests and the shutdown: True once nothing is queued (within ``timeout``)."""
        with self._lock:
            if not self._scheduled:
                return True
            if self._idle is None:
                self._idle = threading.Event()
            idle = self._idle
        return idle.wait(timeout)


def _runs(batch: list[bytes | Operation]) -> Iterator[bytes | Operation]:
    """The batch in order, the data queued in a row joined into one write. Consumed as
    it goes: data already written is not kept alive by the batch."""
    batch.reverse()
    while batch:
        item = batch.pop()
        if isinstance(item, bytes) and batch and isinstance(batch[-1], bytes):
            parts = [item]
            while batch and isinstance(more := batch[-1], bytes):
                batch.pop()
                parts.append(more)
            item = b"".join(parts)
            del parts
        yield item


def _CHECK(sink: LogSink) -> None:
    """The queued form of :meth:`QueuedFile.check` (one object for every file: the tick
    queues a check per file); :meth:`QueuedFile._do` runs it as ``_check_now``."""
    raise AssertionError("run by QueuedFile._do")  # pragma: no cover
