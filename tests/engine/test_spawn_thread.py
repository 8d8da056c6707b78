"""The spawn thread: children started from a small descriptor table of its own.

Each test tries to break one promise of :mod:`patrol.engine.spawn_thread`: the thread
holds none of Patrol's descriptors (so none leaks into a child, and none is kept open
behind Patrol's back), a child gets exactly the descriptors handed over, a failed start
is raised in the caller, the garbage collector never runs in the thread's table, the
signal wakeup descriptor stays valid there, and spawning works without the thread.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from patrol.engine import spawn_thread
from patrol.engine.spawn import spawn
from patrol.engine.spawn_thread import SpawnThread, SpawnThreadGone


#: how long after the child exited its output pipe may stay open (it closes at once)
EOF_DEADLINE = 10.0


def table(tid: int) -> set[int]:
    return {int(fd) for fd in os.listdir(f"/proc/self/task/{tid}/fd")}


def target(tid: int, fd: int) -> str:
    return os.readlink(f"/proc/self/task/{tid}/fd/{fd}")


@pytest.fixture
def thread() -> Iterator[SpawnThread]:
    spawner = SpawnThread()
    assert spawner.start(), spawner.setup_error
    yield spawner
    spawner.stop()


def run_child(argv: list[str], **kw: object) -> tuple[int, bytes]:
    """Spawn through :func:`spawn` with stdout on a pipe; (exit code, output)."""
    read_end, write_end = os.pipe()
    try:
        proc = spawn(argv, env={"PATH": "/usr/bin:/bin"}, cwd="/", stdout=write_end, stderr=write_end, **kw)  # type: ignore[arg-type]
    finally:
        os.close(write_end)
    _, status = os.waitpid(proc.pid, 0)  # the outputs here are far below a pipe's buffer
    chunks = []
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    try:
        while True:  # to end of file, which a copy of the write end kept anywhere would hold off
            assert poller.poll(EOF_DEADLINE * 1000), "no end of file: a copy of the pipe's write end is still open somewhere"
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


def test_the_thread_keeps_none_of_patrols_descriptors(thread: SpawnThread) -> None:
    tid = thread.native_id
    assert tid is not None
    own = table(tid) - {0, 1, 2}
    assert len(own) == 1 and target(tid, own.pop()).startswith("socket:")  # its end of the socket pair
    many = [os.pipe() for _ in range(50)]  # opened after: never in the thread's table either
    try:
        mine = {target(threading.get_native_id(), fd) for pair in many for fd in pair}
        assert not mine & {target(tid, fd) for fd in table(tid)}  # numbers may repeat; the files may not
    finally:
        for pair in many:
            os.close(pair[0])
            os.close(pair[1])


def test_a_child_gets_only_its_streams_however_many_descriptors_patrol_holds() -> None:
    many = [os.pipe() for _ in range(500)]
    try:
        code, out = run_child(["/bin/sh", "-c", "echo ppid=$PPID; ls /proc/$$/fd"])
    finally:
        for pair in many:
            os.close(pair[0])
            os.close(pair[1])
    assert code == 0
    lines = out.decode().split()
    assert lines[0] == f"ppid={os.getpid()}"  # Patrol's own child: its reaper waits for it
    assert set(lines[1:]) <= {"0", "1", "2", "10"}  # sh may keep one of its own (dash: 10)
    assert spawn_thread.current() is not None  # it did run through the thread


def test_the_thread_keeps_no_copy_of_a_handed_descriptor() -> None:
    """A handed pipe end is closed in the thread once the child has it: when the child
    and Patrol close theirs, the reader sees end of file (a copy would hold it open)."""
    code, out = run_child(["/bin/echo", "hello"])
    assert (code, out) == (0, b"hello\n")  # run_child read to end of file: nothing else held it
    spawner = spawn_thread.current()
    assert spawner is not None and spawner.native_id is not None
    assert len(table(spawner.native_id) - {0, 1, 2}) <= 2  # its socket (and a wakeup descriptor)


def test_a_failed_start_is_raised_in_the_caller_and_leaves_nothing_behind(tmp_path: Path) -> None:
    spawner = spawn_thread.current()
    assert spawner is not None and spawner.native_id is not None
    before = table(spawner.native_id)
    with pytest.raises(FileNotFoundError):
        run_child(["/nonexistent/program"])
    with pytest.raises(PermissionError):
        plain = tmp_path / "plain"
        plain.write_text("not a program\n")
        plain.chmod(0o644)
        run_child([str(plain)])  # no execute bit: refused, root or not
    assert table(spawner.native_id) == before
    code, out = run_child(["/bin/echo", "still", "works"])
    assert (code, out) == (0, b"still works\n")


def test_a_launched_child_gets_its_status_pipe_through_the_thread() -> None:
    from patrol.engine.spawn import LaunchStatus, ProcessSettings

    status = LaunchStatus()
    try:
        code, out = run_child(["/bin/sh", "-c", "echo nice=$(cut -d' ' -f19 /proc/$$/stat)"],
                              settings=ProcessSettings(nice=7), status=status)
        status._close_write()
        assert status.read() == ""  # the launcher reported no failed step
    finally:
        status.close()
    assert (code, out) == (0, b"nice=7\n")


def test_a_launcher_failure_arrives_on_the_status_pipe() -> None:
    from patrol.engine.spawn import LaunchStatus, ProcessSettings

    status = LaunchStatus()
    try:
        code, _ = run_child(["/nonexistent/program"], settings=ProcessSettings(nice=1), status=status)
        status._close_write()
        message = status.read()
    finally:
        status.close()
    assert code == 127
    assert "/nonexistent/program" in message


def test_the_collector_never_runs_in_the_threads_table() -> None:
    """Collect after every allocation while spawning: a finalizer run in the thread would
    close the thread's descriptor of its number, so no collection may start there."""
    spawner = spawn_thread.current()
    assert spawner is not None
    threads: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            threads.append(threading.get_native_id())

    old = gc.get_threshold()
    gc.callbacks.append(seen)
    gc.set_threshold(1)
    try:
        for _ in range(20):
            code, _ = run_child(["/bin/true"])
            assert code == 0
    finally:
        gc.set_threshold(*old)
        gc.callbacks.remove(seen)
    assert threads, "no collection ran at all: the test would prove nothing"
    assert spawner.native_id not in threads
    assert gc.isenabled()


def test_the_signal_wakeup_descriptor_stays_valid_in_the_thread() -> None:
    """A signal handled in the thread writes to the wakeup descriptor by number: the
    thread keeps its copy, the same socket as Patrol's."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    old = signal.set_wakeup_fd(writer.fileno())
    try:
        spawner = SpawnThread(wakeup=(writer.fileno(), -1))
        assert spawner.start()
        try:
            assert spawner.native_id is not None
            assert writer.fileno() in table(spawner.native_id)
            assert target(spawner.native_id, writer.fileno()) == target(threading.get_native_id(), writer.fileno())
        finally:
            spawner.stop()
    finally:
        signal.set_wakeup_fd(old if old >= 0 and _is_open(old) else -1)
        reader.close()
        writer.close()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_a_stopped_thread_refuses_and_spawn_starts_the_child_itself(thread: SpawnThread) -> None:
    thread.stop()
    with pytest.raises(SpawnThreadGone):
        thread.run(lambda copies: 1, [])
    assert not thread.thread.is_alive()


def test_without_the_thread_children_start_from_the_callers_thread() -> None:
    """``PATROL_SPAWN_THREAD=0`` (and a refused ``unshare``) spawn as before."""
    code = (
        "import os\n"
        "from patrol.engine import spawn_thread\n"
        "from patrol.engine.spawn import spawn\n"
        "r, w = os.pipe()\n"
        "p = spawn(['/bin/echo', 'direct'], env={}, cwd='/', stdout=w, stderr=w)\n"
        "os.close(w)\n"
        "print(os.read(r, 100).decode().strip(), spawn_thread.current() is None, os.waitpid(p.pid, 0)[1])\n"
    )
    env = {**os.environ, "PATROL_SPAWN_THREAD": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["direct", "True", "0"]
