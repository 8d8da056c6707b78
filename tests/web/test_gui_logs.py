"""The GUI's log reading on real files: tail, follow, containment, listing, runs; and
the small formatting and CPU/memory helpers the pages use."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from patrol.web.gui import fmt
from patrol.web.gui import logpages
from patrol.web.gui.logpages import LogPages
from patrol.engine.logread import LogDir, read_from, tail
from patrol.util.safefile import open_for_reading
from patrol.engine.cpu import CpuSampler
from patrol.web.gui.security import safe_next
from patrol.plugin.model import AppConfig, ServiceConfig
from patrol.web.gui.settings import app_settings, mask, service_settings
from patrol.engine.logfiles import day_directory


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("content, lines, expected", [
    ("a\nb\nc\n", 2, "b\nc\n"),
    ("a\nb\nc", 2, "b\nc"),  # the last line is still being written
    ("a\nb\nc\n", 10, "a\nb\nc\n"),
    ("a\nb\nc\n", 3, "a\nb\nc\n"),
    ("", 5, ""),
    ("\n\n\n", 2, "\n\n"),
    ("only\n", 1, "only\n"),
])
def test_tail_returns_the_last_lines(tmp_path: Path, content: str, lines: int, expected: str) -> None:
    path = write(tmp_path / "a.log", content)
    result = tail(str(path), lines)
    assert result.text == expected and result.offset == len(content.encode()) and not result.truncated


def test_tail_of_a_big_file_reads_only_its_end(tmp_path: Path) -> None:
    path = write(tmp_path / "big.log", "".join(f"line {i}\n" for i in range(2_000_000)))  # ~25 MB
    started = time.perf_counter()
    result = tail(str(path), 3)
    elapsed = time.perf_counter() - started
    assert result.text == "line 1999997\nline 1999998\nline 1999999\n"
    assert elapsed < 0.05, f"tail took {elapsed:.3f}s: it must not read the whole file"


def test_tail_is_bounded_by_bytes_and_says_so(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log", "x" * 500 + "\n" + "y" * 100 + "\n" + "z\n")
    result = tail(str(path), 10, max_bytes=150)
    assert result.truncated and result.text == "y" * 100 + "\nz\n"  # no partial first line
    huge_line = write(tmp_path / "b.log", "q" * 1000)
    result = tail(str(huge_line), 1, max_bytes=100)
    assert result.truncated and result.text == "q" * 100


def test_tail_decodes_bad_utf8_without_failing(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log", b"ok\n\xff\xfe broken\n")
    assert tail(str(path), 1).text == "\ufffd\ufffd broken\n"


def test_read_from_follows_appends_and_truncation(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log", "one\n")
    first = read_from(str(path), 0)
    assert (first.text, first.offset, first.reset, first.more) == ("one\n", 4, False, False)
    with open(path, "a") as f:
        f.write("two\n")
    second = read_from(str(path), first.offset)
    assert (second.text, second.offset) == ("two\n", 8)
    write(path, "new\n")  # truncated and rewritten (copytruncate rotation)
    third = read_from(str(path), second.offset)
    assert third.reset and (third.text, third.offset) == ("new\n", 4)
    chunked = read_from(str(path), 0, limit=2)
    assert (chunked.text, chunked.offset, chunked.more) == ("ne", 2, True)


def test_read_from_never_splits_a_character(tmp_path: Path) -> None:
    text = "héllo wörld"
    data = text.encode()
    path = write(tmp_path / "a.log", data[:2])  # "h" and half of "é"
    first = read_from(str(path), 0)
    assert (first.text, first.offset) == ("h", 1)
    write(path, data)
    rest = read_from(str(path), first.offset)
    assert first.text + rest.text == text and rest.offset == len(data)
    pieces, offset = [], 0
    while offset < len(data):  # small steps that cut through characters still give them whole
        chunk = read_from(str(path), offset, limit=3)
        assert chunk.offset > offset
        pieces.append(chunk.text)
        offset = chunk.offset
    assert "".join(pieces) == text


def test_log_dir_resolves_only_inside(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    write(root / "2026" / "may" / "1" / "1.stdout.log", "x")
    write(tmp_path / "secret.txt", "no")
    (root / "out").symlink_to(tmp_path)
    (root / "out.log").symlink_to(tmp_path / "secret.txt")
    (root / "in.log").symlink_to(root / "2026" / "may" / "1" / "1.stdout.log")
    logdir = LogDir(str(root))
    assert logdir.resolve("2026/may/1/1.stdout.log") == str(root / "2026/may/1/1.stdout.log")
    assert logdir.resolve("") == str(root) and logdir.resolve("/") == str(root)
    assert logdir.resolve("in.log") == str(root / "2026/may/1/1.stdout.log")
    for bad in ("../secret.txt", "2026/../../secret.txt", "out/secret.txt", "out.log", "/../secret.txt",
                "missing.log", "a\0b", str(tmp_path / "secret.txt")):
        assert logdir.resolve(bad) is None, bad
    assert logdir.relative(str(root / "2026/may/1/1.stdout.log")) == "2026/may/1/1.stdout.log"
    assert logdir.relative(str(tmp_path / "secret.txt")) is None
    assert LogDir(str(tmp_path / "logs2")).resolve("x") is None  # a log directory not made yet


def test_listing_escapes_names_and_hides_links_out(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    write(root / 'a b?#&"<>.log', "x")
    write(root / "sub" / "x.log", "y")
    write(root / os.fsdecode(b"bad\xffname.log"), "z")
    (root / "escape").symlink_to(tmp_path)
    (root / "dangling").symlink_to(tmp_path / "nothing")
    entries = LogDir(str(root)).listing(str(root))
    assert [(e.name, e.href, e.is_dir) for e in entries] == [
        ("sub", "sub/", True),
        ('a b?#&"<>.log', "a%20b%3F%23%26%22%3C%3E.log", False),
        ("bad\ufffdname.log", "bad%FFname.log", False),
    ]


def test_runs_are_found_newest_first_across_days_months_and_years(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    stamps = [time.mktime(t) for t in (
        (2025, 12, 31, 23, 0, 0, 0, 0, -1), (2026, 1, 2, 8, 0, 0, 0, 0, -1),
        (2026, 2, 10, 9, 0, 0, 0, 0, -1), (2026, 2, 9, 9, 0, 0, 0, 0, -1))]
    for ts in stamps:
        ns = int(ts * 1e9)
        day = Path(day_directory(str(root), ns))
        write(day / f"{ns}.stdout.log", "o")
        write(day / f"{ns}.stderr.log", "ee")
    write(root / "2026" / "february" / "10" / "notes.txt", "ignored")
    runs = LogDir(str(root)).runs(3)
    assert [r.ns for r in runs] == sorted((int(t * 1e9) for t in stamps), reverse=True)[:3]
    assert set(runs[0].files) == {"stdout", "stderr"} and runs[0].sizes == {"stdout": 1, "stderr": 2}
    assert runs[0].files["stdout"].startswith("2026/february/10/")


def download(f: BinaryIO, size: int) -> bytes:
    """A raw download's body, as the log pages send it."""
    async def collect() -> bytes:
        return b"".join([block async for block in LogPages(None)._download(f, size)])  # type: ignore[arg-type]

    return asyncio.run(collect())


def test_a_raw_download_stops_at_the_announced_size(tmp_path: Path) -> None:
    path = write(tmp_path / "a.log", "0123456789" * 10_000)
    assert download(open_for_reading(str(path)), 25) == b"0123456789012345678901234"
    assert len(download(open_for_reading(str(path)), 100_000)) == 100_000


def test_a_raw_download_whose_read_hangs_ends_at_the_deadline_off_the_loop(monkeypatch) -> None:
    """I2: each block is read in the log threads under FILE_TIMEOUT (before, starlette read
    it in its shared pool with no deadline). The hang is real: a pipe nobody writes."""
    monkeypatch.setattr(logpages, "FILE_TIMEOUT", 0.3)
    reader, writer = os.pipe()
    f = os.fdopen(reader, "rb")
    pages = LogPages(None)  # type: ignore[arg-type]

    async def main() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        with pytest.raises(logpages.FileTimeout):
            await pages._download(f, 100).__anext__()
        ticker.cancel()
        readers = [t.name for t in threading.enumerate() if t.name.startswith("patrol-gui-logs")]
        assert readers, "the read did not run in the log threads"
        return ticks

    with os.fdopen(writer, "wb"):  # closed on the way out: the stuck read sees end of file
        assert asyncio.run(main()) > 5  # the loop went on while the read hung
    pages._threads.shutdown(wait=True)  # the close queued behind the read has run
    assert f.closed


def test_formatting_helpers() -> None:
    assert [fmt.duration(s) for s in (None, 0, 59, 61, 3600 * 5 + 7 * 60, 86400 * 3 + 3600)] == [
        "", "0s", "59s", "1m 01s", "5h 07m", "3d 01h"]
    assert [fmt.size(n) for n in (None, 0, 1023, 1536, 5 * 1024**2, 3 * 1024**4)] == [
        "", "0 B", "1023 B", "1.5 KiB", "5.0 MiB", "3.0 TiB"]


def test_sensitive_values_are_masked_at_any_depth() -> None:
    value = {"db": {"password": "p", "host": "h"}, "tokens": ["a"], "list": [{"api_key": "k"}], "empty_secret": ""}
    assert mask(value) == {"db": {"password": "••••••", "host": "h"}, "tokens": "••••••",
                           "list": [{"api_key": "••••••"}], "empty_secret": ""}


def test_configuration_shown_has_every_key_and_no_secret() -> None:
    app = AppConfig(id="a", keepalive="pid-patrol", name="n", binary="b", working_directory="/w",
                    log_directory="l", secret="hunter2", env=("API_TOKEN=hunter3", "PLAIN=1"),
                    x={"db": {"password": "hunter4"}})
    rows = {s.key: s for s in app_settings(app)}
    text = " ".join(s.value for s in rows.values())
    assert "hunter" not in text
    assert rows["secret"].masked and rows["env"].value == "API_TOKEN=••••••\nPLAIN=1" and rows["x"].masked
    assert rows["binary"].value == "b  →  /w/b" and rows["stop-signal"].value == "SIGUSR1 (10)"
    service = ServiceConfig(id="s", name="S", service="cron", management={"status": "service"},
                            parameters={"status": "status"}, ignore_exit_codes={"status": frozenset({3})})
    assert {s.key: s.value for s in service_settings(service)}["status"] == "service: status (ignored exit codes: 3)"


@pytest.mark.parametrize("value, expected", [
    ("/app/web", "/app/web"), ("/?q=a&state=running", "/?q=a&state=running"), (None, "/"), ("", "/"),
    ("//evil.example", "/"), ("/\\evil.example", "/"), ("https://evil.example/", "/"), ("app", "/"),
    ("/a\r\nSet-Cookie: x=1", "/"), ("/\t/evil.example", "/"), ("/a\\b", "/"),
])
def test_redirects_after_an_action_stay_on_patrol(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_cpu_share_first_averages_since_start_then_measures_between_readings() -> None:
    """The one sampler the API and the GUI share: a number from the first reading on (the
    average since the process started), then the share between readings a window apart;
    within the window the last figure is reused; no process, no figure."""
    now = [100.0]
    stats = CpuSampler(clock=lambda: now[0])
    first = stats.usage(os.getpid())
    assert first is not None and first.cpu_percent >= 0.0 and first.rss > 1024 * 1024
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:  # burn some CPU time of our own
        pass
    assert stats.usage(os.getpid()) == first  # within the window: no new reading
    now[0] += 1.0
    second = stats.usage(os.getpid())
    assert second is not None and second.cpu_percent > 1.0
    assert stats.usage(0) is None and stats.usage(2**22 + 12345) is None