"""Log files are open only while in use: made at the start (the current link points at
them), closed while the app is quiet, opened again by its next write, through the same
checks as the first open, with nothing lost and a failure of that open reported.

Every descriptor Patrol holds is copied and closed by the kernel at each spawn, so a
quiet app must cost its pipes only, not its log files too.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
from pathlib import Path

from patrol.engine.logfiles import RETRY_SECONDS, LogSink
from patrol.engine.logrouter import LogRouter
from patrol.engine.logwriter import LogWriter, QueuedFile
from patrol.testing import load_item, wait_for
from patrol.testing.logrouter import ticking_until


def held_paths(pid: int | str = "self") -> set[str]:
    """The files process ``pid`` has open (what its descriptors point at)."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass  # closed meanwhile
    return found


# A child that writes a line, waits until the test lets it go on, writes another, exits.
TWO_LINES = ("import os, sys, time\n"
             "print('one', flush=True)\n"
             "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
             "print('two', flush=True)\n")


def test_a_quiet_file_is_closed_and_the_next_write_opens_it_again_losing_nothing(tmp_path: Path) -> None:
    config = load_item("apps", {"keepalive": 1, "name": "Quiet", "binary": "x", "working-directory": str(tmp_path),
                                "log-directory": "logs", "pid-path": "p.pid"}, "quiet")
    go_on = tmp_path / "go-on"
    closes = 0.2  # seconds idle before a file is closed

    async def scenario() -> tuple[QueuedFile, QueuedFile, list[bool]]:
        loop = asyncio.get_running_loop()
        router = LogRouter(loop, [config], writer=LogWriter(threads=2), idle_close=closes)
        instance = router.open_instance(config, 1_000_000_000)
        out, err = (stream.file for stream in instance.streams)
        child = subprocess.Popen([sys.executable, "-c", TWO_LINES, str(go_on)], stdout=instance.child_stdout,
                                 stderr=instance.child_stderr)
        instance.close_child_ends()
        instance.start()
        seen: list[bool] = []  # was the stdout file open while the child was quiet, at each tick


        root = tmp_path / "logs"
        await ticking_until(router, lambda: (root / "current.stderr.log").exists() and (root / "current.stdout.log").exists(),
                    "the current links at the start")
        assert os.path.realpath(root / "current.stderr.log") == err.path
        await ticking_until(router, lambda: Path(out.path).exists() and Path(out.path).read_bytes() == b"one\n", "the first line")
        assert err.path not in held_paths()  # nothing written to it: made, then closed at once
        await ticking_until(router, lambda: out.path not in held_paths(), "the quiet stdout file closed")
        seen.append(out._sink is not None and out._sink.fd >= 0)
        go_on.touch()
        await ticking_until(router, lambda: Path(out.path).read_bytes() == b"one\ntwo\n", "the next line, in a reopened file")
        assert await loop.run_in_executor(None, child.wait) == 0
        await router.close()
        return out, err, seen

    out, err, seen = asyncio.run(scenario())
    assert seen == [False]
    assert Path(out.path).read_bytes() == b"one\ntwo\n" and out.dropped == 0
    assert Path(err.path).read_bytes() == b"" and err._sink is None and out._sink is None  # closed, healthy: at rest
    assert not {out.path, err.path} & held_paths()


def test_a_closed_file_deleted_meanwhile_is_made_again_by_the_check(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "day" / "1.stdout.log"
    sink = LogSink(str(path), str(tmp_path), clock=lambda: now[0], idle_close=30)
    assert sink.make(exclusive=True) and sink.fd < 0 and path.exists()
    sink.write(b"one\n")
    now[0] += 29
    sink.check()
    assert sink.fd >= 0  # not idle long enough
    now[0] += 1
    sink.check()
    assert sink.fd < 0
    path.unlink()
    sink.check()
    assert path.exists() and sink.fd < 0  # made again, and not held
    sink.write(b"two\n")
    assert path.read_bytes() == b"two\n"
    sink.close()


def test_a_reopen_that_is_refused_drops_the_output_and_is_reported(tmp_path: Path) -> None:
    """Between two writes, the day directory was swapped for a symlink to elsewhere:
    the reopen refuses to follow it, the output is dropped and counted, the problem is
    reported once; writing resumes when the directory is back."""
    day, elsewhere = tmp_path / "logs" / "day", tmp_path / "elsewhere"
    elsewhere.mkdir()
    writer = LogWriter(threads=1)
    sink = LogSink(str(day / "1.stdout.log"), str(tmp_path / "logs"), idle_close=0)
    assert sink.make(exclusive=True)
    queued = QueuedFile(sink, writer)
    problems: list[str | None] = []
    queued.on_failing = lambda _, error: problems.append(error)
    queued.write(b"one\n")
    queued.check()  # idle at once (idle_close 0): closed
    assert queued.wait_idle(30) and sink.fd < 0
    day.rename(tmp_path / "logs" / "moved")
    day.symlink_to(elsewhere)
    queued.write(b"lost\n")
    assert queued.wait_idle(30)
    assert sink.failing and problems == [sink.failing] and queued.dropped == len(b"lost\n")
    assert list(elsewhere.iterdir()) == []  # nothing made through the symlink
    day.unlink()
    (tmp_path / "logs" / "moved").rename(day)
    sink._retry_at = 0.0  # (the retry delay is RETRY_SECONDS; its own test is in test_logfiles)
    queued.write(b"two\n")
    assert queued.wait_idle(30)
    writer.close()
    sink.close()
    assert problems == [problems[0], None]
    assert (day / "1.stdout.log").read_bytes() == b"one\ntwo\n"


def test_patrol_holds_no_descriptor_for_the_log_files_of_a_quiet_app(patrol) -> None:
    """An app that writes nothing (as most services between events): its files and
    current links are there from its start, and Patrol holds its pipes only."""
    quiet = patrol.app(1, binary="/bin/sleep", args=["300"])
    p = patrol.start(patrol.config(apps={"quiet": quiet}))
    p.running_pid("quiet")
    logs = patrol.tmp_path / "logs"
    links = [logs / "current.stdout.log", logs / "current.stderr.log"]
    wait_for(lambda: all(link.exists() for link in links), 10, "the current links of the quiet app")
    files = {os.path.realpath(link) for link in links}
    assert all(Path(f).is_file() and Path(f).stat().st_size == 0 for f in files)
    assert len(files) == 2 and not files & held_paths(p.pid)


def test_a_file_reopened_after_a_failure_stays_open_until_a_write_ends_the_episode(tmp_path: Path) -> None:
    """Closed while idle, a file still failing would be reopened (and logged) at each
    check and closed again after each idle period, for as long as the app is quiet."""
    now = [0.0]
    path = tmp_path / "1.stdout.log"
    sink = LogSink(str(path), str(tmp_path), clock=lambda: now[0], idle_close=30)
    assert sink.make(exclusive=True)
    sink.fail(OSError(errno.EIO, "Input/output error"))  # an episode, as a write error starts it
    now[0] += RETRY_SECONDS
    sink.check()
    assert sink.fd >= 0 and sink.failing  # reopened; the episode ends with a write that works
    now[0] += 60
    sink.check()
    assert sink.fd >= 0
    sink.write(b"works\n")
    assert sink.failing is None and path.read_bytes() == b"works\n"
    now[0] += 30
    sink.check()
    assert sink.fd < 0
