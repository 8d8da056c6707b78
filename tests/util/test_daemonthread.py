"""A call that hangs for good, run off the loop, must not keep the process from exiting (R1).

A reload reads the config off the loop; an ``open`` on a hung network file system never
returns. With ``asyncio.to_thread``, ``asyncio.run`` joined that thread at exit and the
process never ended. The hang here is real: the call waits on an event nobody sets.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import pytest

from patrol.util.daemonthread import StillRunning, in_daemon_thread

HANGS_THEN_EXITS = textwrap.dedent("""
    import asyncio, threading
    from patrol.util.daemonthread import StillRunning, in_daemon_thread

    async def main():
        for _ in range(3):  # more than one stuck call: none of them is waited for
            try:
                await in_daemon_thread(threading.Event().wait, timeout=0.1, name="hangs")
            except StillRunning as exc:
                print("gave up on", exc.thread.name, exc.thread.is_alive(), flush=True)

    asyncio.run(main())
    print("loop closed", flush=True)
""")


def test_a_call_stuck_past_its_deadline_does_not_keep_the_process_from_exiting():
    result = subprocess.run([sys.executable, "-c", HANGS_THEN_EXITS], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == ["gave up on hangs True"] * 3 + ["loop closed"], result


def test_the_result_and_the_exception_of_the_call_reach_the_waiter():
    async def main() -> None:
        assert await in_daemon_thread(sum, [1, 2, 3], timeout=10, name="sums") == 6
        with pytest.raises(ZeroDivisionError):
            await in_daemon_thread(divmod, 1, 0, timeout=10, name="divides")

    asyncio.run(main())


def test_a_call_finishing_after_its_waiter_gave_up_is_dropped_quietly():
    """The late result is handed to no one: no error in the loop, the thread ends."""
    release = threading.Event()
    errors: list[dict[str, object]] = []

    def slow() -> int:
        release.wait(10)
        return 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: errors.append(context))
        with pytest.raises(StillRunning) as stuck:
            await in_daemon_thread(slow, timeout=0.05, name="slow")
        release.set()
        await loop.run_in_executor(None, stuck.value.thread.join, 10)
        for _ in range(3):
            await asyncio.sleep(0)  # the thread's hand-over runs now, and finds its waiter gone
        assert not stuck.value.thread.is_alive() and stuck.value.thread.daemon

    asyncio.run(main())
    assert errors == []
