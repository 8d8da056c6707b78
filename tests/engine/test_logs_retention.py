"""Log files people can find and that do not fill the disk, against a real ``patrol run``:
no file for a start that never ran, the current-log symlinks, gzip of old generations,
retention by age (never the current files), and what the GUI and API rely on.
"""

from __future__ import annotations

import gzip
import os
import re
import time
from pathlib import Path

from patrol.testing import wait_for

NUMBERED = re.compile(rb"^line (\d{9}) x+$", re.M)


def numbers(data: bytes) -> list[int]:
    return [int(m.group(1)) for m in NUMBERED.finditer(data)]


def log_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_missing_binary_retried_20_times_creates_no_log_file(patrol):
    """Before: two empty files (and the day directories) per attempt, 108 files in 10
    minutes; the files were later removed again, the directories stayed. Now the files
    are made only once the program runs."""
    app = patrol.app(1, binary="no-such-binary", **{"log-directory": "ghost-logs", "backoff-base": 0.01,
                                                    "backoff-max": 0.02})
    p = patrol.start(patrol.config(apps={"ghost": app}))

    def attempts() -> int:
        return sum(r.get("event") == "start failed" and r.get("app") == "ghost" for r in p.log_records())

    wait_for(lambda: attempts() >= 20, 30, "20 failed starts")
    assert "cannot execute" in p.app("ghost")["last-reason"]
    assert not (patrol.tmp_path / "ghost-logs").exists(), log_files(patrol.tmp_path / "ghost-logs")


def test_current_symlinks_point_at_the_running_instance_and_move_at_each_start(patrol):
    shared = patrol.app(1, **{"log-directory": "shared"})
    p = patrol.start(patrol.config(apps={"t": patrol.app(1), "a": shared, "b": dict(shared)}))
    logs = patrol.tmp_path / "logs"
    pid = p.running_pid("t", ready=True)
    link = logs / "current.stdout.log"
    wait_for(lambda: link.is_symlink() and (logs / "current.stderr.log").is_symlink(), 10, "the symlinks")
    assert not os.readlink(link).startswith("/")  # relative: the directory may be moved or mounted elsewhere
    assert f"started, pid {pid}," in link.read_text()
    first = link.resolve()
    p.api(id="t", group="app", toggle=3)
    new = p.running_pid("t", other_than=pid, ready=True)
    wait_for(lambda: link.resolve() != first and f"started, pid {new}," in link.read_text(), 10, "the link moved")
    # a directory shared by several apps: one link per app
    wait_for(lambda: all((patrol.tmp_path / "shared" / f"current.{i}.{s}.log").is_symlink()
                         for i in "ab" for s in ("stdout", "stderr")), 10, "per-app links in a shared directory")
    assert not (patrol.tmp_path / "shared" / "current.stdout.log").exists()


def test_log_compress_keeps_every_line_in_gz_generations_and_the_newest_plain(patrol):
    lines = 3000  # 300 KB through 16 KiB files: ~18 rotations
    app = patrol.app(1, env=["TESTAPP_FLOOD=1000000", f"TESTAPP_FLOOD_LINES={lines}"],
                     **{"log-max-bytes": 16 * 1024, "log-max-files": 40, "log-max-total-bytes": 0,
                        "log-compress": True})
    p = patrol.start(patrol.config(apps={"t": app}))
    p.running_pid("t")
    logs = patrol.tmp_path / "logs"
    current = wait_for(lambda: (logs / "current.stdout.log").is_symlink() and (logs / "current.stdout.log").resolve(),
                       10, "the current file")

    def flood_done() -> bool:
        try:
            return b"flood done" in current.read_bytes()
        except FileNotFoundError:  # between a rotation's rename and the new file
            return False

    wait_for(flood_done, 30, "the whole flood")

    def settled() -> bool:
        names = [f.name for f in current.parent.iterdir()]
        plain = [n for n in names if re.fullmatch(re.escape(current.name) + r"\.([2-9]|\d\d+)", n)]
        return not plain and not any(n.endswith(".tmp") for n in names)

    wait_for(settled, 20, "every generation from .2 on compressed")
    gz = sorted(current.parent.glob(current.name + ".*.gz"), key=lambda f: int(f.name.split(".")[-2]), reverse=True)
    assert len(gz) >= 10
    plain_one = current.with_name(current.name + ".1")
    data = b"".join(gzip.decompress(f.read_bytes()) for f in gz) + plain_one.read_bytes() + current.read_bytes()
    assert numbers(data) == list(range(1, lines + 1)), "a line lost or repeated across compression"
    assert all(f.stat().st_size < 16 * 1024 // 3 for f in gz)  # numbered lines compress well


def test_files_older_than_log_max_age_days_are_pruned_never_the_current_ones(patrol):
    logs = patrol.tmp_path / "logs"
    old_day = logs / "2020" / "january" / "1"
    old_day.mkdir(parents=True)
    month_ago = time.time() - 30 * 86400
    old = [old_day / "1577836800000000000.stdout.log", old_day / "1577836800000000000.stderr.log.1"]
    for path in old:
        path.write_text("old\n")
        os.utime(path, (month_ago, month_ago))
    empty_day = logs / "2020" / "february" / "2"
    empty_day.mkdir(parents=True)
    unrelated = old_day.parent / "notes.txt"
    unrelated.write_text("not Patrol's")
    os.utime(unrelated, (month_ago, month_ago))
    app = patrol.app(1, **{"log-max-age-days": 7, "log-max-total-bytes": 0})
    p = patrol.start(patrol.config(apps={"t": app}))
    pid = p.running_pid("t", ready=True)
    wait_for(lambda: not any(f.exists() for f in old), 10, "the old files pruned at start")
    assert not empty_day.exists() and not old_day.exists() and unrelated.exists()
    current = [f for f in log_files(logs) if f.name.endswith(".log") and f.parent.name != "january"]
    assert len(current) == 2
    for path in current:  # the running instance's files, made to look a month old
        os.utime(path, (month_ago, month_ago))
    again = old_day / "1577836800000000001.stdout.log"
    old_day.mkdir(parents=True)
    again.write_text("old\n")
    os.utime(again, (month_ago, month_ago))
    status, _ = p.request("POST", "/-/reload", {})  # a reload checks every log directory again
    assert status == 200
    wait_for(lambda: not again.exists(), 10, "the next prune")
    assert all(f.exists() for f in current), "a current file was pruned"
    assert p.app("t")["pid"] == pid
    records = [r for r in p.log_records() if r.get("event") == "pruned old log files"]
    assert records and records[0]["max_age_days"] == 7
