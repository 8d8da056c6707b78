"""The listeners of a run's output (what the log probe subscribes to) exist only once
someone listens: a run nobody listens to keeps none, and one that gets a listener
mid-run hands it every line read from then on, through the real pipes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from patrol.engine.logrouter import LogRouter
from patrol.engine.logwriter import LogWriter
from patrol.testing import load_item

# prints a line, waits until the test lets it go on, prints two more (one on stderr,
# the last one without a newline), exits
CHILD = ("import os, sys, time\n"
         "print('before', flush=True)\n"
         "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
         "print('after', flush=True)\n"
         "print('oops', file=sys.stderr, flush=True)\n"
         "sys.stdout.write('last'); sys.stdout.flush()\n")


def test_listeners_are_made_when_someone_listens_and_hear_what_follows(tmp_path: Path) -> None:
    config = load_item("apps", {"keepalive": 1, "name": "Talk", "binary": "x", "working-directory": str(tmp_path),
                                "log-directory": "logs", "pid-path": "p.pid"}, "talk")
    go_on = tmp_path / "go-on"

    async def scenario() -> tuple[bool, list[tuple[str, str]], bytes]:
        loop = asyncio.get_running_loop()
        router = LogRouter(loop, [config], writer=LogWriter(threads=1))
        instance = router.open_instance(config, 1_000_000_000)
        out = instance.streams[0].sink
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(go_on)], stdout=instance.child_stdout,
                                 stderr=instance.child_stderr)
        instance.close_child_ends()
        instance.start()
        try:
            for _ in range(3000):  # the first line is read (and written) with nobody listening
                if Path(out.path).exists() and Path(out.path).read_bytes() == b"before\n":
                    break
                await asyncio.sleep(0.01)
            none_before = instance._output is None
            heard: list[tuple[str, str]] = []
            instance.output.listen(lambda stream, line: heard.append((stream, line)))
            go_on.touch()
            assert await loop.run_in_executor(None, child.wait) == 0
            for _ in range(3000):  # both pipes read to their end
                if not router.streams:
                    break
                await asyncio.sleep(0.01)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            await router.close()
        return none_before, heard, Path(out.path).read_bytes()

    none_before, heard, written = asyncio.run(scenario())
    assert none_before, "listeners were made for a run nobody listened to"
    assert sorted(heard) == [("stderr", "oops"), ("stdout", "after"), ("stdout", "last")]
    assert written == b"before\nafter\nlast"
