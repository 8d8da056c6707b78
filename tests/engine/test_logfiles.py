"""The log writer and readers on real files: rotation by rename, write errors, hostile
paths, the directory budget, and following a file across rotations."""

from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path

import pytest

from patrol.engine.logread import follow
from patrol.engine.logfiles import LOG_MODE, RETRY_SECONDS, LogSink
from patrol.engine.logretention import prune
from patrol.util.safefile import NotRegularFile, open_for_append, open_for_reading


def lines(start: int, stop: int) -> bytes:
    return b"".join(b"line %06d\n" % n for n in range(start, stop))  # 12 bytes each


def kept(path: Path) -> bytes:
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]), reverse=True)
    return b"".join(p.read_bytes() for p in rotated) + path.read_bytes()


def sink_at(path: Path, **kw) -> LogSink:
    sink = LogSink(str(path), **kw)
    sink.open(exclusive=True)
    return sink


@pytest.mark.parametrize("max_files", [2, 100])
def test_rotation_bounds_every_file_and_keeps_exactly_the_newest_bytes(tmp_path: Path, max_files: int) -> None:
    path = tmp_path / "d" / "1.stdout.log"
    sink = sink_at(path, max_bytes=1000, max_files=max_files)
    data = lines(0, 2000)  # 24 KB
    rng = random.Random(7)
    pos = 0
    while pos < len(data):  # pieces of any size, cutting through lines
        step = rng.randint(1, 3000)
        sink.write(data[pos : pos + step])
        pos += step
        files = list(path.parent.iterdir())
        assert len(files) <= max_files + 1 and all(f.stat().st_size <= 1000 for f in files)
    everything = kept(path)
    assert data.endswith(everything) and (everything == data) == (max_files == 100)
    for rotated in path.parent.glob("*.log.*"):
        assert rotated.read_bytes().endswith(b"\n")  # cut between lines
    assert (path.stat().st_mode & 0o777) == LOG_MODE & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_line_longer_than_the_limit_is_split_and_nothing_else_is(tmp_path: Path) -> None:
    path = tmp_path / "1.stdout.log"
    sink = sink_at(path, max_bytes=100, max_files=10)
    sink.write(b"short\n" + b"x" * 250 + b"\nend\n")
    assert kept(path) == b"short\n" + b"x" * 250 + b"\nend\n"
    assert (tmp_path / "1.stdout.log.3").read_bytes() == b"short\n"  # the long line starts a new file


def test_zero_generations_deletes_a_full_file(tmp_path: Path) -> None:
    path = tmp_path / "1.stdout.log"
    sink = sink_at(path, max_bytes=50, max_files=0)
    sink.write(lines(0, 10))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.stdout.log"] and path.stat().st_size <= 50


def test_a_file_that_cannot_be_renamed_is_emptied_in_place(tmp_path: Path) -> None:
    path = tmp_path / "1.stdout.log"
    (tmp_path / "1.stdout.log.1").mkdir()  # a directory in the way: rename(2) fails
    (tmp_path / "1.stdout.log.1" / "x").write_text("x")
    sink = sink_at(path, max_bytes=100, max_files=1)
    sink.write(lines(0, 30))
    assert path.stat().st_size <= 100 and sink.dropped == 0


def test_a_write_error_drops_output_once_then_reopens(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "1.stdout.log"
    sink = sink_at(path, clock=lambda: now[0])
    sink.write(b"one\n")
    os.close(sink.fd)  # the descriptor goes bad behind its back: EBADF on the next write
    sink.write(b"two\n")
    sink.write(b"three\n")  # within RETRY_SECONDS: dropped without trying
    assert sink.failing and sink.dropped == len(b"two\nthree\n")
    now[0] += RETRY_SECONDS
    sink.write(b"four\n")
    assert sink.failing is None and path.read_bytes() == b"one\nfour\n"


def test_a_deleted_file_is_made_again(tmp_path: Path) -> None:
    path = tmp_path / "day" / "1.stdout.log"
    sink = sink_at(path)
    sink.write(b"before\n")
    path.unlink()
    path.parent.rmdir()
    sink.check()
    sink.write(b"after\n")
    assert path.read_bytes() == b"after\n"


def test_hostile_paths_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile):
        open_for_append(str(fifo), exclusive=False)  # nobody reads it: ENXIO at once
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(NotRegularFile):
            open_for_append(str(fifo), exclusive=False)  # somebody reads it: opened, then refused
    finally:
        os.close(reader)
    with pytest.raises(NotRegularFile):
        open_for_reading(str(fifo))  # no writer: would block forever without O_NONBLOCK
    target = tmp_path / "target"
    target.write_text("precious")
    (tmp_path / "link.log").symlink_to(target)
    with pytest.raises(NotRegularFile):
        open_for_append(str(tmp_path / "link.log"), exclusive=False)
    os.link(target, tmp_path / "hard.log")
    with pytest.raises(NotRegularFile):
        open_for_append(str(tmp_path / "hard.log"), exclusive=False)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.log"))
        with pytest.raises(NotRegularFile):
            open_for_reading(str(tmp_path / "sock.log"))
    assert target.read_text() == "precious"
    with pytest.raises(FileExistsError):
        open_for_append(str(target), exclusive=True)


def test_prune_deletes_oldest_first_and_never_what_is_written(tmp_path: Path) -> None:
    day = tmp_path / "2026" / "may" / "1"
    day.mkdir(parents=True)
    sizes = {"100.stdout.log.2": 10, "100.stdout.log.1": 10, "100.stdout.log": 10, "100.stderr.log": 10,
             "200.stdout.log.1": 10, "200.stdout.log": 10, "300.stdout.log": 10, "notes.txt": 1000}
    for name, size in sizes.items():
        (day / name).write_bytes(b"x" * size)
    os.mkfifo(day / "50.stdout.log")  # not a file: not counted, not touched
    other_day = tmp_path / "2025" / "may" / "1"
    other_day.mkdir(parents=True)
    (other_day / "1.stdout.log").write_bytes(b"x" * 10)
    writing = {str(day / "300.stdout.log"): 30}  # counted as 30 (it may grow to that)
    result = prune(str(tmp_path), 60, writing)
    left = sorted(p.name for p in day.iterdir())
    assert left == ["100.stdout.log", "200.stdout.log", "200.stdout.log.1", "300.stdout.log", "50.stdout.log",
                    "notes.txt"]
    assert not (other_day / "1.stdout.log").exists() and result.total == 60 and result.freed == 40
    result = prune(str(tmp_path), 1, writing)  # a budget below what is being written: that stays
    assert sorted(p.name for p in day.iterdir()) == ["300.stdout.log", "50.stdout.log", "notes.txt"]


def test_a_follower_gets_every_byte_once_however_many_rotations_it_missed(tmp_path: Path) -> None:
    path = tmp_path / "2026" / "may" / "1" / "1.stdout.log"
    sink = sink_at(path, max_bytes=300, max_files=200)  # every generation kept: the follower may lag far
    relative = str(path.relative_to(tmp_path))
    data = lines(0, 3000)
    written = 0
    offset, inode = 0, os.stat(path).st_ino
    got = []
    rng = random.Random(3)
    while True:
        step = rng.choice([0, 5, 700, 2000])  # sometimes several rotations between two reads
        sink.write(data[written : written + step])
        written = min(len(data), written + step)
        chunk = follow(str(tmp_path), relative, offset, inode, limit=rng.choice([7, 100, 4096]))
        assert chunk is not None and not chunk.reset and not chunk.lost
        got.append(chunk.text)
        offset, inode = chunk.offset, chunk.inode
        if written == len(data) and not chunk.text and not chunk.more and not chunk.rotated:
            break
    assert "".join(got).encode() == data


def test_a_follower_during_the_rename_waits_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "1.stdout.log"
    path.write_bytes(b"first\n")
    inode = path.stat().st_ino
    path.rename(tmp_path / "1.stdout.log.1")  # renamed, the new file not made yet
    chunk = follow(str(tmp_path), "1.stdout.log", 0, inode)
    assert chunk is not None and chunk.text == "first\n" and chunk.inode == inode
    chunk = follow(str(tmp_path), "1.stdout.log", chunk.offset, inode)
    assert chunk is not None and chunk.text == "" and chunk.inode == inode  # ask again later
    path.write_bytes(b"second\n")
    chunk = follow(str(tmp_path), "1.stdout.log", chunk.offset, inode)
    assert chunk is not None and chunk.rotated and chunk.text == "second\n"
    assert follow(str(tmp_path), "missing.log", 0, 12345) is None


def test_concurrent_pruning_never_deletes_the_file_being_written(tmp_path: Path) -> None:
    day = tmp_path / "2026" / "may" / "1"
    path = day / "9.stdout.log"
    sink = sink_at(path, max_bytes=200, max_files=3)
    writing = {str(path): 200}
    stop = threading.Event()

    def pruner() -> None:
        while not stop.is_set():
            prune(str(tmp_path), 0, writing)

    thread = threading.Thread(target=pruner)
    thread.start()
    try:
        for n in range(2000):
            sink.write(b"line %06d\n" % n)
    finally:
        stop.set()
        thread.join()
    assert path.exists() and path.read_bytes().endswith(b"line 001999\n")


def test_a_day_directory_swapped_for_a_symlink_is_never_followed(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "logs", tmp_path / "elsewhere"
    elsewhere.mkdir()
    day = root / "2026" / "may" / "1"
    sink = LogSink(str(day / "1.stdout.log"), str(root), max_bytes=100, max_files=3)
    sink.open(exclusive=True)
    sink.write(b"a\n" * 20)
    day.rename(day.with_name("moved"))  # someone who can write the log directory...
    day.symlink_to(elsewhere)  # ...points the day at another directory
    sink.write(b"b\n" * 200)  # rotations: never through the symlink, the file is emptied instead
    with pytest.raises(NotRegularFile):
        LogSink(str(day / "2.stdout.log"), str(root)).open(exclusive=True)
    assert list(elsewhere.iterdir()) == []
    assert (day.with_name("moved") / "1.stdout.log").stat().st_size <= 100


def test_prune_counts_files_being_written_right_across_walks(tmp_path: Path) -> None:
    """Later walks count a file being written that an earlier walk found within its size
    without looking at it again: whatever changes about it must still be seen."""
    day = tmp_path / "2026" / "may" / "1"
    day.mkdir(parents=True)
    old = day / "100.stdout.log"
    old.write_bytes(b"x" * 10)
    growing = day / "200.stdout.log"
    growing.write_bytes(b"x" * 5)
    writing = {str(growing): 30}
    assert prune(str(tmp_path), 0, writing).total == 40  # 10 + 30 (it may grow to that)
    assert prune(str(tmp_path), 0, writing).total == 40  # counted without a look: the same

    # it ends: its own size counts, and it may be deleted like any other
    del writing[str(growing)]
    assert prune(str(tmp_path), 0, writing).total == 15
    assert prune(str(tmp_path), 12, writing).removed == [str(old)]
    assert prune(str(tmp_path), 4, writing).removed == [str(growing)]

    # another file is put in its place at a path being written (adopted: larger than the
    # size it may reach): its real size counts, at every walk
    day.mkdir(parents=True, exist_ok=True)
    growing.write_bytes(b"x" * 5)
    writing[str(growing)] = 30
    assert prune(str(tmp_path), 0, writing).total == 30
    replacement = day / "replacement"
    replacement.write_bytes(b"x" * 50)
    os.replace(replacement, growing)
    assert prune(str(tmp_path), 0, writing).total == 50
    assert prune(str(tmp_path), 0, writing).total == 50

    # within its size again (rotated: a new file), then not a regular file any more
    os.replace(growing, day / "200.stdout.log.1")
    growing.write_bytes(b"")
    assert prune(str(tmp_path), 0, writing).total == 80
    assert prune(str(tmp_path), 0, writing).total == 80
    fifo = day / "fifo"
    os.mkfifo(fifo)
    os.replace(fifo, growing)
    assert prune(str(tmp_path), 0, writing).total == 50



def test_prune_remembers_many_files_being_written_and_finds_each_again(tmp_path: Path) -> None:
    """The files a walk found within their size are remembered by inode in a sorted array
    (a set of ints cost ~90 bytes per file): each must be found again by the next walk,
    whatever the order the directory lists them in, and only those."""
    day = tmp_path / "2026" / "may" / "1"
    day.mkdir(parents=True)
    adopted = day / "500.stdout.log"  # being written but larger than its size: never remembered
    adopted.write_bytes(b"x" * 100)
    writing = {str(adopted): 30}
    for i in range(200):
        path = day / f"{1000 + i}.stdout.log"
        path.write_bytes(b"x" * 5)
        writing[str(path)] = 30
    done = day / "999.stdout.log"  # not being written: its own size, and deletable
    done.write_bytes(b"x" * 7)
    assert prune(str(tmp_path), 0, writing).total == 200 * 30 + 7 + 100
    for path in list(writing)[1:]:  # someone else writes past the size: remembered files are not looked at
        with open(path, "ab") as f:
            f.write(b"y" * 100)
    found = prune(str(tmp_path), 0, writing)
    assert found.total == 200 * 30 + 7 + 100  # every one found in the array, none stat'ed again
    adopted.write_bytes(b"x" * 120)  # not remembered: looked at again
    assert prune(str(tmp_path), 200 * 30 + 1, writing).removed == [str(done)]  # never one being written
    # a file put in at a remembered path has another inode: looked at, its real size counts
    first = list(writing)[1]
    replacement = day / "replacement"
    replacement.write_bytes(b"x" * 50)
    os.replace(replacement, first)
    assert prune(str(tmp_path), 0, writing).total == 199 * 30 + 50 + 120

def test_the_current_link_is_made_even_over_a_leftover_temporary(tmp_path: Path) -> None:
    """The link is made under a temporary name and renamed over the old one; a temporary
    left by a Patrol of the same pid that died in between is replaced, not an error."""
    sink = sink_at(tmp_path / "2026" / "may" / "1" / "1.stdout.log", root=str(tmp_path))
    sink.update_link("current.stdout.log")
    assert os.readlink(tmp_path / "current.stdout.log") == "2026/may/1/1.stdout.log"
    leftover = tmp_path / f".current.stdout.log.{os.getpid()}.tmp"
    os.symlink("/etc/passwd", leftover)
    second = sink_at(tmp_path / "2026" / "may" / "1" / "2.stdout.log", root=str(tmp_path))
    second.update_link("current.stdout.log")
    assert os.readlink(tmp_path / "current.stdout.log") == "2026/may/1/2.stdout.log"
    assert not os.path.lexists(leftover)
