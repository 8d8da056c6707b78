"""The log writer threads: a hung disk holds them, never the loop; order and exactly-once.

A disk that hangs cannot be made for real in a test (it needs a dead NFS server or a
FUSE file system), so the one file's write waits on an event here: everything else is
real (the loop, the pipe, a child process flooding it, the files).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from patrol.engine.logfiles import LogSink
from patrol.engine.logpolicy import LogPolicy
from patrol.engine.logrouter import LogRouter
from patrol.engine.logwriter import LogWriter, QueuedFile
from patrol.testing import load_item, wait_for

LINES = 200_000  # 100-byte numbered lines: 20 MB, far more than the pipe and the queue hold
FLOOD = (f"import sys\nfor n in range(1, {LINES + 1}):\n"
         "    sys.stdout.write(f'line {n:09d} ' + 'x' * 84 + '\\n')\n")


def app_config(tmp_path: Path):
    return load_item("apps", {"keepalive": 1, "name": "Flood", "binary": "x", "working-directory": str(tmp_path),
                              "log-directory": "logs", "log-max-bytes": 0, "pid-path": "p.pid"}, "flood")


def test_a_hung_disk_holds_the_writer_never_the_loop_and_what_is_kept_is_in_order(tmp_path: Path) -> None:
    config = app_config(tmp_path)
    stuck = threading.Event()
    release = threading.Event()

    async def scenario() -> tuple[QueuedFile, int]:
        loop = asyncio.get_running_loop()
        router = LogRouter(loop, [config], writer=LogWriter(threads=1))
        instance = router.open_instance(config, 1_000_000_000)
        stream = instance.streams[0]
        stream.file.limit = 256 * 1024

        class HungSink(LogSink):  # the hung disk, see the docstring
            def write(self, data: bytes) -> None:  # it hangs on the first write, and comes back slowly
                if not stuck.is_set():
                    stuck.set()
                    release.wait(60)
                    time.sleep(0.3)  # (the shutdown must wait for this file, though its stream has ended)
                super().write(data)

        sink = stream.sink  # not opened yet: the files are made once the program runs
        stream.file.sink = HungSink(**{f.name: getattr(sink, f.name) for f in fields(sink)})
        child = subprocess.Popen([sys.executable, "-c", FLOOD], stdout=instance.child_stdout,
                                 stderr=instance.child_stderr)
        instance.close_child_ends()
        instance.start()
        beats = 0
        while stream in router.streams:  # the loop drains the pipe to its end while the disk hangs
            await asyncio.sleep(0.01)
            beats += 1
        assert stuck.is_set() and not release.is_set()
        assert await loop.run_in_executor(None, child.wait) == 0  # the app was never blocked
        release.set()
        await router.close()
        return stream.file, beats

    queued, beats = asyncio.run(scenario())
    assert beats > 0 and queued.overflowed > 0
    data = next((tmp_path / "logs").rglob("*.stdout.log")).read_bytes()
    kept = [int(n) for n in re.findall(rb"^line (\d{9}) ", data, re.M)]
    assert kept[0] == 1 and kept == sorted(set(kept)), "a line repeated or out of order"
    assert len(kept) < LINES  # what did not fit in the queue was dropped (and counted), not waited for


def test_operations_of_one_file_run_in_order_once(tmp_path: Path) -> None:
    writer = LogWriter(threads=4)
    sink = LogSink(str(tmp_path / "f.log"), str(tmp_path))
    sink.open(exclusive=True)
    queued = QueuedFile(sink, writer, limit=1 << 30)
    for n in range(20_000):
        queued.write(b"%d\n" % n)
        if n % 1000 == 0:
            queued.check()
    assert queued.wait_idle(30)
    writer.close()
    sink.close()
    assert (tmp_path / "f.log").read_bytes() == b"".join(b"%d\n" % n for n in range(20_000))


def test_waiting_for_a_busy_file_ends_when_its_writes_are_done(tmp_path: Path) -> None:
    """An idle file keeps no event (thousands of files are idle at once); one that is
    waited for while busy gets one, and the waiter wakes when the writes are done."""
    writer = LogWriter(threads=1)
    sink = LogSink(str(tmp_path / "f.log"), str(tmp_path))
    sink.open(exclusive=True)
    queued = QueuedFile(sink, writer)
    assert queued.wait_idle(0)  # nothing queued: idle at once
    writing = threading.Event()
    release = threading.Event()

    def held(_: LogSink) -> None:  # a slow disk, held until the waiter waits
        writing.set()
        release.wait(30)

    queued.call(held)
    queued.write(b"after\n")
    assert writing.wait(30)
    assert not queued.wait_idle(0.01)  # busy: the wait times out
    waited: list[bool] = []
    waiter = threading.Thread(target=lambda: waited.append(queued.wait_idle(30)))
    waiter.start()
    release.set()
    waiter.join(30)
    assert waited == [True]
    assert queued.wait_idle(0)  # and it stays idle
    writer.close()
    sink.close()
    assert (tmp_path / "f.log").read_bytes() == b"after\n"


def test_what_is_queued_at_close_is_written_and_nothing_after(tmp_path: Path) -> None:
    writer = LogWriter(threads=2)
    sink = LogSink(str(tmp_path / "f.log"), str(tmp_path))
    sink.open(exclusive=True)
    queued = QueuedFile(sink, writer)
    for n in range(100):
        queued.write(b"%d\n" % n)
    writer.close()
    assert queued.wait_idle(30)
    queued.write(b"late\n")  # after the close: dropped, and the file stays idle
    assert queued.wait_idle(0)
    sink.close()
    assert (tmp_path / "f.log").read_bytes() == b"".join(b"%d\n" % n for n in range(100))


class _HungCheck(LogSink):
    """A sink whose check hangs until released (a stuck mount under one log file)."""

    __slots__ = ()
    entered = threading.Event()
    release = threading.Event()

    def check(self) -> None:
        type(self).entered.set()
        type(self).release.wait(30)
        super().check()


def test_the_ticks_checks_run_as_one_job_and_a_hung_check_holds_only_its_file(tmp_path: Path) -> None:
    """One writer job checks every file (no wake-up per file); a check that hangs holds
    its own file only: another file's writes go on meanwhile; a deleted file is opened
    again; an ended file is never reopened by a check queued after its close."""
    writer = LogWriter(threads=2)
    hung_sink = _HungCheck(str(tmp_path / "hung.log"), str(tmp_path))
    other_sink = LogSink(str(tmp_path / "other.log"), str(tmp_path))
    gone_sink = LogSink(str(tmp_path / "gone.log"), str(tmp_path))
    ended_sink = LogSink(str(tmp_path / "ended.log"), str(tmp_path))
    files = []
    for sink in (hung_sink, other_sink, gone_sink, ended_sink):
        sink.open(exclusive=True)
        files.append(QueuedFile(sink, writer))
    hung, other, gone, ended = files
    (tmp_path / "gone.log").unlink()
    ended.call(lambda sink: sink.close(), last=True)
    assert ended.wait_idle(30) and ended_sink.fd < 0
    writer.check_all([hung, other, ended, gone])  # gone last: once it is back, the job is done
    assert _HungCheck.entered.wait(30)
    other.write(b"while the other check hangs\n")
    assert other.wait_idle(30)  # written by the other writer, not held behind the hung check
    assert (tmp_path / "other.log").read_bytes() == b"while the other check hangs\n"
    _HungCheck.release.set()
    wait_for(lambda: (tmp_path / "gone.log").exists(), 30, "the deleted file opened again")
    assert ended_sink.fd < 0  # the ended file stayed closed
    writer.close()
    for sink in (hung_sink, other_sink, gone_sink):
        sink.close()


def test_the_files_of_one_writer_share_one_lock_never_held_while_a_file_is_written(tmp_path: Path) -> None:
    """Every file's queue is guarded by the writer's one lock (a lock per file is ~90
    bytes, thousands of files): a write that hangs on one file must not hold it, so the
    loop still queues output for that file and another file's writes go on."""
    writer = LogWriter(threads=2)
    writing = threading.Event()
    release = threading.Event()

    def hung(_: LogSink) -> None:  # the first operation of the file hangs (a stuck disk)
        writing.set()
        release.wait(30)

    sinks = [LogSink(str(tmp_path / f"{name}.log"), str(tmp_path)) for name in ("hung", "other")]
    for sink in sinks:
        sink.open(exclusive=True)
    stuck, other = (QueuedFile(sink, writer) for sink in sinks)
    assert stuck._lock is other._lock is writer.file_lock
    stuck.call(hung)
    assert writing.wait(30)
    stuck.write(b"queued while its file hangs\n")  # the loop's side: never waits for the disk
    assert stuck.pending()
    other.write(b"written meanwhile\n")
    assert other.wait_idle(30)
    assert (tmp_path / "other.log").read_bytes() == b"written meanwhile\n"
    release.set()
    assert stuck.wait_idle(30)
    assert (tmp_path / "hung.log").read_bytes() == b"queued while its file hangs\n"
    writer.close()
    for sink in sinks:
        sink.close()


def test_what_is_queued_behind_a_running_operation_is_done_after_it_in_order(tmp_path: Path) -> None:
    """The writer takes a file's whole queue at once (a list, not a deque: a start burst
    queues thousands of creations): operations and data queued while it works come
    after, in order, each once; data still behind an operation counts as pending."""
    writer = LogWriter(threads=2)
    sink = LogSink(str(tmp_path / "f.log"), str(tmp_path))
    sink.open(exclusive=True)
    queued = QueuedFile(sink, writer)
    entered, release = threading.Event(), threading.Event()
    seen: list[tuple[str, bytes, bool]] = []  # (operation, the file so far, pending then)

    def note(name: str):
        def operation(_: LogSink) -> None:
            seen.append((name, (tmp_path / "f.log").read_bytes(), queued.pending()))
        return operation

    def held(_: LogSink) -> None:
        entered.set()
        release.wait(30)

    queued.write(b"a\n")
    queued.call(held)
    queued.write(b"b\n")  # behind the held operation, in the same batch
    assert entered.wait(30)
    queued.call(note("first"))  # queued while the writer works: the next batch
    queued.write(b"c\n")
    queued.write(b"d\n")
    queued.call(note("second"))
    queued.write(b"e\n")
    queued.call(note("third"))
    release.set()
    assert queued.wait_idle(30)
    writer.close()
    sink.close()
    assert seen == [("first", b"a\nb\n", True), ("second", b"a\nb\nc\nd\n", True),
                    ("third", b"a\nb\nc\nd\ne\n", False)]
    assert (tmp_path / "f.log").read_bytes() == b"a\nb\nc\nd\ne\n"


def tick_check_at_rest(directory: Path, count: int, gone_at: int, monkeypatch) -> tuple[Path, list[str]]:
    """``count`` log files at rest in ``directory``, the one at ``gone_at`` deleted, then
    the tick's check of them all; the deleted file and the paths looked at one by one."""
    writer = LogWriter(threads=2)
    policy = LogPolicy(str(directory), 1 << 20, 1)
    files = []
    for n in range(count):
        path = directory / f"{1_000 + n}.stdout.log"
        path.write_bytes(b"")
        files.append(QueuedFile(str(path), writer, policy=policy))
    gone = Path(files[gone_at].path)
    gone.unlink()
    looks: list[str] = []
    real_lexists = os.path.lexists
    monkeypatch.setattr(os.path, "lexists", lambda p: looks.append(str(p)) or real_lexists(p))  # counted only
    writer.check_all(files)
    wait_for(gone.exists, 30, "the deleted file made again")
    assert all(f.wait_idle(30) for f in files)
    writer.close()
    return gone, looks


def test_the_ticks_check_of_files_at_rest_lists_their_directory_once(tmp_path: Path, monkeypatch) -> None:
    """500 apps sharing a log directory are 1,000 files at rest most of the time: the
    tick's check lists the directory once instead of looking at each file; a file that
    is gone is still checked in full, and made again."""
    listings: list[str] = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda d=".": listings.append(str(d)) or real_scandir(d))  # counted only
    gone, looks = tick_check_at_rest(tmp_path, 200, 100, monkeypatch)
    assert listings.count(str(tmp_path)) == 1, listings
    assert set(looks) == {str(gone)}  # only the file the listing did not find was looked at


def test_a_log_directory_filled_with_entries_is_not_listed_past_a_bound(tmp_path: Path, monkeypatch) -> None:
    """Someone made 20,000 entries beside two log files: the tick's listing stops after a
    bounded number of them and the files are looked at one by one (as before the
    listing), so a huge directory costs neither memory nor a long walk every tick."""
    for n in range(20_000):
        (tmp_path / f"junk-{n}").touch()
    _, looks = tick_check_at_rest(tmp_path, 2, 1, monkeypatch)
    assert str(tmp_path / "1000.stdout.log") in looks  # looked at one by one: the listing gave up
