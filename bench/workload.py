"""The workload every daemon supervises, and the start log its children write.

Each child is the same ``sh`` script: it appends ``ID PID START`` to the start log, the
start being its own clock reading (``date +%s.%N``), then ``exec``s ``sleep`` under the
same pid. Start-up and respawn times are read from these lines, so they are the
children's own timestamps on the same wall clock the benchmark reads, whichever daemon
started them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CHILD_SCRIPT = """#!/bin/sh
echo "$1 $$ $(date +%s.%N)" >> {log}
exec sleep 86400
"""
#: The PATH every child gets, whichever daemon starts it.
CHILD_PATH = "/usr/local/bin:/usr/bin:/bin"


def app_ids(n: int, prefix: str = "a") -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


@dataclass
class Start:
    pid: int
    at: float  # the child's own wall-clock reading


@dataclass
class StartLog:
    """Incremental reader of the start log: every start of every app, in order."""

    path: Path
    starts: dict[str, list[Start]] = field(default_factory=dict)
    _offset: int = 0
    _partial: bytes = b""

    def refresh(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next read
        for line in lines:
            parts = line.split()
            if len(parts) == 3:
                self.starts.setdefault(parts[0].decode(), []).append(Start(int(parts[1]), float(parts[2])))

    def started(self) -> int:
        """How many distinct apps have started at least once."""
        return len(self.starts)

    def current_pids(self) -> dict[str, int]:
        """The pid of each app's latest start."""
        return {app: runs[-1].pid for app, runs in self.starts.items()}

    def first_start_after(self, app: str, when: float) -> Start | None:
        for start in self.starts.get(app, ()):
            if start.at > when:
                return start
        return None

    def wait(self, predicate: Callable[[StartLog], object], timeout: float, poll: float = 0.01) -> bool:
        """Re-read until ``predicate(self)`` holds; False after ``timeout`` seconds.

        The benchmark's own polling costs a few file reads per 10 ms; the figures come
        from the children's timestamps, so the polling interval does not bias them.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            if predicate(self):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(poll)


class Workload:
    """A fresh directory with the child script, its start log, and a marker.

    The marker goes into the environment of the daemon and of every child, so that
    whatever a session started can be found again and killed by pid.
    """

    def __init__(self, root: Path, name: str) -> None:
        self.marker = f"patrol-bench-{uuid.uuid4()}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
        self.start_log_path = self.dir / "starts.log"
        self.script = self.dir / "child.sh"
        self.script.write_text(CHILD_SCRIPT.format(log=self.start_log_path))
        self.script.chmod(0o755)
        self.log = StartLog(self.start_log_path)
        (self.dir / "logs").mkdir()

    def env(self) -> dict[str, str]:
        """The environment a daemon is launched with."""
        return {**os.environ, "BENCH_MARKER": self.marker, "PATH": f"{CHILD_PATH}:{os.environ.get('PATH', '')}"}

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
