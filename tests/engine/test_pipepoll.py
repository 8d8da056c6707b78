"""The one epoll set every app's output pipe is watched through (patrol/engine/pipepoll.py):
real pipes, a real loop."""

from __future__ import annotations

import asyncio
import os

import pytest

from patrol.engine.pipepoll import PipePoll


def _pipe() -> tuple[int, int]:
    return os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_many_pipes_are_one_descriptor_of_the_loop() -> None:
    """What the memory saving rests on: the loop's selector holds one entry for the set,
    not one per pipe, and every pipe is still read."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        selector = loop._selector  # type: ignore[attr-defined]
        before = len(selector.get_map())
        heard: list[bytes] = []
        pipes = [_pipe() for _ in range(20)]
        poll: PipePoll[int] = PipePoll(loop, lambda fd: heard.append(os.read(fd, 100)))
        for read_end, _ in pipes:
            poll.add(read_end, read_end)
        assert len(selector.get_map()) == before + 1 and len(poll) == 20
        for n, (_, write_end) in enumerate(pipes):
            os.write(write_end, b"%d" % n)
        await _until(lambda: len(heard) == 20)
        assert sorted(heard) == sorted(b"%d" % n for n in range(20))
        for read_end, write_end in pipes:
            poll.remove(read_end)
            os.close(read_end)
            os.close(write_end)
        poll.close()
        assert len(selector.get_map()) == before

    asyncio.run(main())


def test_what_one_wakeup_leaves_unread_is_served_on_the_next() -> None:
    """Level-triggered: a reader that takes a bounded share per wake-up gets the rest later."""

    async def main() -> None:
        read_end, write_end = _pipe()
        got = bytearray()
        poll: PipePoll[int] = PipePoll(asyncio.get_running_loop(), lambda fd: got.extend(os.read(fd, 7)))
        poll.add(read_end, read_end)
        os.write(write_end, b"x" * 1000)
        await _until(lambda: len(got) == 1000)
        poll.close()
        os.close(read_end)
        os.close(write_end)

    asyncio.run(main())


def test_a_failing_callback_does_not_stop_the_other_pipes(capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        (bad_r, bad_w), (good_r, good_w) = _pipe(), _pipe()
        heard: list[bytes] = []

        def callback(fd: int) -> None:
            data = os.read(fd, 100)
            if fd == bad_r:
                raise RuntimeError("a bug in one pipe's reader")
            heard.append(data)

        poll: PipePoll[int] = PipePoll(loop, callback)
        poll.add(bad_r, bad_r)
        poll.add(good_r, good_r)
        os.write(bad_w, b"a")
        os.write(good_w, b"b")
        await _until(lambda: heard == [b"b"])
        os.write(good_w, b"c")  # the set still works after the failure
        await _until(lambda: heard == [b"b", b"c"])
        poll.close()
        for fd in (bad_r, bad_w, good_r, good_w):
            os.close(fd)

    asyncio.run(main())
    assert "reading an output pipe failed" in capsys.readouterr().out


def test_a_removed_pipe_is_not_reported_again_when_its_number_is_reused() -> None:
    """Removed before it is closed: a new pipe that gets the same descriptor number is
    the new pipe's, and the old one's data (still held by another descriptor of it, as a
    child that has not exec'd holds one) never reaches the reader."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        seen: list[tuple[str, bytes]] = []
        poll: PipePoll[tuple[str, int]] = PipePoll(loop, lambda item: seen.append((item[0], os.read(item[1], 100))))
        old_r, old_w = _pipe()
        held = os.dup(old_r)  # the old pipe stays open elsewhere
        poll.add(old_r, ("old", old_r))
        poll.remove(old_r)
        os.close(old_r)
        new_r, new_w = _pipe()
        if new_r != old_r:  # make the reuse certain
            os.dup2(new_r, old_r)
            os.close(new_r)
            new_r = old_r
        poll.add(new_r, ("new", new_r))
        os.write(old_w, b"stale")
        os.write(new_w, b"fresh")
        await _until(lambda: bool(seen))
        await asyncio.sleep(0)  # one more turn: nothing else may arrive
        assert seen == [("new", b"fresh")]
        poll.close()
        for fd in (held, old_w, new_r, new_w):
            os.close(fd)

    asyncio.run(main())


def test_removing_what_is_not_watched_is_harmless() -> None:
    async def main() -> None:
        poll: PipePoll[int] = PipePoll(asyncio.get_running_loop(), lambda fd: None)
        poll.remove(12345)
        poll.close()
        poll.close()

    asyncio.run(main())
