"""A quiet app's log files keep no sink while at rest (closed, healthy): it is made
again by the next operation that needs it. Nothing of a file's life may change by
that: the file is made and linked at the start, output after a silence is written,
rotated (and the directory pruned, the generations compressed), a file deleted while at
rest is made again by the tick's check, and a failing file keeps its episode.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from patrol.engine.logrouter import LogRouter
from patrol.engine.logwriter import LogWriter
from patrol.engine.logpipes import LogStream
from patrol.testing import load_item
from patrol.testing.logrouter import ticking_until

# Silent until the test lets it go on, then 40 numbered lines of 20 bytes (the log
# file holds 5 of them), then it exits.
SILENT_THEN_TALKS = ("import os, sys, time\n"
                     "while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
                     "for n in range(40): sys.stdout.write(f'line {n:013d}\\n'); sys.stdout.flush()\n")


def at_rest(stream: LogStream) -> bool:
    return stream.file._sink is None and not stream.file._scheduled


def test_a_silent_files_sink_rests_and_output_after_the_silence_is_written_and_rotated(tmp_path: Path) -> None:
    config = load_item("apps", {"keepalive": 1, "name": "Late", "binary": "x", "working-directory": str(tmp_path),
                                "log-directory": "logs", "pid-path": "p.pid", "log-max-bytes": 100,
                                "log-max-files": 20, "log-compress": True}, "late")
    go_on, root = tmp_path / "go-on", tmp_path / "logs"

    async def scenario() -> tuple[list[bool], list[str], str, list[bool]]:
        loop = asyncio.get_running_loop()
        router = LogRouter(loop, [config], writer=LogWriter(threads=2), idle_close=0.05)
        pruned: list[str] = []
        prune_soon = router.prune_soon
        router.prune_soon = lambda directory: (pruned.append(directory), prune_soon(directory))[1]  # type: ignore[method-assign]
        instance = router.open_instance(config, 1_000_000_000)
        child = subprocess.Popen([sys.executable, "-c", SILENT_THEN_TALKS, str(go_on)],
                                 stdout=instance.child_stdout, stderr=instance.child_stderr)
        instance.close_child_ends()
        instance.start()
        out, err = instance.streams


        await ticking_until(router, lambda: all(at_rest(s) for s in (out, err)) and (root / "current.stdout.log").exists()
                    and (root / "current.stderr.log").exists(), "both files made, linked, and at rest")
        made = [Path(s.file.path).exists() for s in (out, err)]
        links = [str((root / f"current.{s.name}.log").resolve()) for s in (out, err)]
        go_on.touch()
        assert await loop.run_in_executor(None, child.wait) == 0
        await ticking_until(router, lambda: not router.streams, "the pipes read to their end")
        await ticking_until(router, lambda: all(at_rest(s) for s in (out, err)), "the files at rest again")
        rested = [out.file.dropped == 0, err.file.dropped == 0, bool(pruned)]
        await router.close()
        return made, links, out.file.path, rested

    made, links, path, rested = asyncio.run(scenario())
    assert made == [True, True] and links[0] == path and links[1].endswith(".stderr.log")
    assert rested == [True, True, True]  # nothing dropped; each rotation asked for a prune
    current = Path(path)
    generations = sorted(current.parent.glob(current.name + ".*"), key=lambda p: -int(p.name.split(".")[3]))
    assert any(p.suffix == ".gz" for p in generations)  # compressed from .2 on, as ever
    assert current.read_bytes().startswith(b"line ") and current.stat().st_size <= 100


def test_a_file_deleted_while_at_rest_is_made_again_and_a_failing_file_is_not_dropped(tmp_path: Path) -> None:
    config = load_item("apps", {"keepalive": 1, "name": "Gone", "binary": "x", "working-directory": str(tmp_path),
                                "log-directory": "logs", "pid-path": "p.pid"}, "gone")
    go_on = tmp_path / "go-on"

    async def scenario() -> tuple[bytes, bool]:
        loop = asyncio.get_running_loop()
        router = LogRouter(loop, [config], writer=LogWriter(threads=1), idle_close=0.05)
        instance = router.open_instance(config, 1_000_000_000)
        child = subprocess.Popen([sys.executable, "-c", SILENT_THEN_TALKS, str(go_on)],
                                 stdout=instance.child_stdout, stderr=instance.child_stderr)
        instance.close_child_ends()
        instance.start()
        out = instance.streams[0]
        path = Path(out.file.path)


        await ticking_until(router, lambda: at_rest(out) and path.exists(), "the file made, at rest")
        path.unlink()
        await ticking_until(router, lambda: path.exists() and at_rest(out), "the deleted file made again by the tick's check")
        # its directory replaced by a file: the next writes fail, and the failing sink is kept
        path.parent.rename(tmp_path / "day-moved")
        path.parent.write_bytes(b"")
        go_on.touch()
        assert await loop.run_in_executor(None, child.wait) == 0
        await ticking_until(router, lambda: not router.streams and not out.file._scheduled, "the output read and dropped")
        kept = out.file._sink is not None and out.file._sink.failing is not None and out.file.dropped > 0
        await router.close()
        return (tmp_path / "day-moved" / path.name).read_bytes(), kept

    before, kept = asyncio.run(scenario())
    assert before == b"" and kept


def test_apps_with_the_same_log_settings_share_one_policy_until_the_next_reload(tmp_path: Path) -> None:
    def app(name: str, **more: object):
        return load_item("apps", {"keepalive": 1, "name": name, "binary": "x", "working-directory": str(tmp_path),
                                  "log-directory": "logs", "pid-path": f"{name}.pid", **more}, name)

    one, two, big = app("one"), app("two"), app("big", **{"log-max-bytes": 4096})

    async def scenario() -> None:
        router = LogRouter(asyncio.get_running_loop(), [one, two, big], writer=LogWriter(threads=1))
        instances = [router.open_instance(config, 1_000_000_000 + n) for n, config in enumerate((one, two, big))]
        try:
            policies = [stream.file._policy for instance in instances for stream in instance.streams]
            assert policies[0] is policies[1] is policies[2] is policies[3]
            assert policies[4] is policies[5] and policies[4] is not policies[0]
            assert policies[4].max_bytes == 4096 and instances[2].streams[0].file.max_bytes == 4096
            router.reindex([one, two, big])  # a reload: settings may have changed, new policies
            again = router.open_instance(one, 2_000_000_000)
            assert again.streams[0].file._policy is not policies[0]
            instances.append(again)
        finally:
            for instance in instances:
                instance.abort()
            await router.close()

    asyncio.run(scenario())
