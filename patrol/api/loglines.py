"""The API's log lines: the last lines of an app's current log, then what follows, by cursor.

``POST /api/logs`` (or ``GET`` with a query) answers ``lines`` and a ``cursor``; the
next request with that cursor gets what was written since, exactly once, in order:

* across **rotation** (the cursor names the file's inode: a rotated file is read to its
  end before the new one, :func:`patrol.engine.logread.follow`, the GUI's reader too);
* across **restarts**: once an instance's file is complete (no process of it can write
  any more), the cursor moves on to the next instance's file, from its start;
* **whole lines**: while a file is being written, a line without its newline yet waits
  for the next request (so a line is never shown in two pieces); a file's last line
  without a newline is shown once the file is complete.

The file reads run in a worker thread (:func:`read`): everything here but :func:`read`
runs on the loop and is cheap (the app's instance files come from its history).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from patrol.engine.logfiles import generations
from patrol.engine.logread import FOLLOW_CHUNK, MAX_LINES, LogDir, follow, tail

if TYPE_CHECKING:
    from patrol.engine.readside import AppView

DEFAULT_LINES = 20
STREAMS = ("stdout", "stderr", "both")
FIELDS = {"id": str, "group": str, "stream": str, "lines": int, "cursor": str, "since": float, "secret": str}
#: files one request moves through at most (instances that ended with nothing to read)
MAX_HOPS = 8
#: rotated generations looked at for the start of an instance's output (log-max-files is at most 100)
MAX_GENERATIONS = 100
_NS = re.compile(r"(\d{1,20})\.(?:stdout|stderr|stdmerge)\.log$")


@dataclass(frozen=True)
class Cursor:
    """Where a reader is: a file (relative to the log directory), its inode, an offset."""

    file: str
    inode: int
    offset: int

    def encode(self) -> str:
        raw = json.dumps([self.file, self.inode, self.offset], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def decode(text: str) -> "Cursor | None":
        """The cursor an earlier answer gave, or None when ``text`` is not one."""
        if len(text) > 8192:
            return None
        try:
            value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (ValueError, binascii.Error):
            return None
        if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str)
                or not all(type(v) is int and 0 <= v < 2**63 for v in value[1:]) or "\0" in value[0]):
            return None
        return Cursor(value[0], value[1], value[2])


@dataclass(frozen=True)
class LogRequest:
    id: str
    stream: str
    lines: int
    cursor: Cursor | None
    secret: str
    since: float | None = None  # Unix seconds: from the start of the instance running then


def parse(request: Any) -> LogRequest | list[str]:
    """The request, or what is wrong with it (each error names the field)."""
    if not isinstance(request, dict):
        return ["the request must be a JSON object"]
    problems = []
    for key, value in request.items():
        kind = FIELDS.get(key)
        if kind is None:
            problems.append(f"{str(key)[:40]}: unknown field (known: {', '.join(FIELDS)})")
        elif type(value) is not kind and not (kind is float and type(value) is int):
            problems.append(f"{key}: must be {'a string' if kind is str else 'a number' if kind is float else 'an integer'}")
    if problems:
        return problems
    if not request.get("id"):
        problems.append("id: the app's id is required")
    if request.get("group", "app").lower() not in ("app", "apps"):
        problems.append("group: only apps have logs")
    stream = request.get("stream", "both")
    if stream not in STREAMS:
        problems.append(f"stream: must be one of {', '.join(STREAMS)}")
    elif stream == "both" and "cursor" in request:
        problems.append("cursor: follow each stream with its own cursor (stream stdout or stderr)")
    lines = request.get("lines", DEFAULT_LINES)
    if not 0 <= lines <= MAX_LINES:
        problems.append(f"lines: must be from 0 to {MAX_LINES}")
    since = request.get("since")
    if since is not None and not 0 <= since < 2**33:
        problems.append("since: must be a time in Unix seconds")
    if since is not None and (stream == "both" or "cursor" in request):
        problems.append("since: give it with one stream (stdout or stderr) and no cursor")
    cursor = None
    if "cursor" in request:
        cursor = Cursor.decode(request["cursor"])
        if cursor is None:
            problems.append("cursor: not a cursor an answer gave")
    if problems:
        return problems
    return LogRequest(request["id"].lower(), stream, lines, cursor, request.get("secret", ""),
                      float(since) if since is not None else None)


def from_query(items: list[tuple[str, str]]) -> dict[str, Any] | list[str]:
    """A GET query as a request (``lines`` a number; no secret in a URL)."""
    request: dict[str, Any] = {}
    for key, value in items:
        if key == "secret":
            return ["secret: send it in a POST body, never in a URL"]
        if key in request:
            return [f"{key[:40]}: given more than once"]
        if key in ("lines", "since"):
            if not (value.isascii() and value.isdigit()) or len(value) > 12:
                return [f"{key}: must be a whole number"]
            request[key] = int(value)
        else:
            request[key] = value
    return request


@dataclass(frozen=True)
class Source:
    """What the reading thread needs, taken on the loop."""

    root: str
    files: tuple[str, ...]  # the stream's file of each instance, oldest first (absolute)
    writing: Mapping[str, int]  # files some instance may still write to (the router's, replaced whole)
    stream: str = "stdout"  # stdout, stderr or stdmerge


def sources(app: "AppView", stream: str, writing: Mapping[str, int]) -> list[Source]:
    """One source per stream asked for (``both`` of an app with std-merge: its one file)."""
    paths = [record.log for record in app.state.history if record.log]
    current = app.state.started_log
    if current is not None and current.stdout:
        paths.append(current.stdout)
    root = app.config.log_root
    if app.config.std_merge or (current is not None and current.merged):
        return [Source(root, tuple(dict.fromkeys(paths)), writing, "stdmerge")]
    found = []
    for name in (("stdout", "stderr") if stream == "both" else (stream,)):
        files = paths if name == "stdout" else [_stderr_of(p) for p in paths]
        found.append(Source(root, tuple(dict.fromkeys(files)), writing, name))
    return found


def read_both(out: Source, err: Source, runs: list[tuple[str, int]], count: int) -> dict[str, Any]:
    """The last ``count`` lines of stdout and stderr together, in the order their lines
    arrived as far as Patrol saw it (``runs``: see the engine's OutputOrder); lines older
    than what it remembers come stdout first. Then a cursor for each stream."""
    tails = {s.stream: _tail(LogDir(s.root), s, count) for s in (out, err)}
    left = {name: list(answer["lines"]) for name, answer in tails.items()}
    newest: list[tuple[str, str]] = []
    for stream, lines in reversed(runs):
        source = left.get(stream, [])
        taken = source[len(source) - min(lines, len(source)):]
        del source[len(source) - len(taken):]
        newest[:0] = [(stream, line) for line in taken]
    merged = [(name, line) for name in ("stdout", "stderr") for line in left[name]] + newest
    merged = merged[max(0, len(merged) - count):] if count else []
    return {"lines": [line for _, line in merged], "streams": [name for name, _ in merged],
            "cursors": {name: answer["cursor"] for name, answer in tails.items()},
            "files": {name: answer["file"] for name, answer in tails.items()}, "more": False, "lost": False}


def _stderr_of(stdout: str) -> str:
    return stdout[: -len(".stdout.log")] + ".stderr.log" if stdout.endswith(".stdout.log") else stdout


def read(src: Source, req: LogRequest) -> dict[str, Any]:
    """The answer's lines and cursor (in a worker thread: it reads files)."""
    logdir = LogDir(src.root)
    if req.cursor is None and req.since is None:
        return _tail(logdir, src, req.lines)
    cursor = req.cursor or _since(logdir, src, req.since or 0.0)
    lines: list[str] = []
    lost, budget = False, FOLLOW_CHUNK
    open_files = {logdir.relative(path) for path in src.files if path in src.writing}
    for _ in range(MAX_HOPS):
        if not cursor.file:
            following = _next_file(logdir, src, None)
            if following is None:
                break
            cursor = following
        chunk = follow(logdir.root, cursor.file, cursor.offset, cursor.inode or None, budget)
        if chunk is not None:
            lost = lost or chunk.lost or chunk.reset
            data = chunk.data
            done = not chunk.live or cursor.file not in open_files
            if not done and not data.endswith(b"\n") and len(data) < budget:
                data = data[: data.rfind(b"\n") + 1]  # a line still being written waits
            cursor = Cursor(cursor.file, chunk.inode, chunk.start + len(data))
            lines += data.decode("utf-8", "replace").splitlines()
            budget -= len(data)
            if chunk.more or budget <= 0:
                return _answer(lines, cursor, lost, more=True)
            if data or not done:
                break
        following = _next_file(logdir, src, cursor.file)
        if following is None:
            break
        cursor = following
    return _answer(lines, cursor, lost, more=False)


def _tail(logdir: LogDir, src: Source, count: int) -> dict[str, Any]:
    if not src.files:
        return _answer([], Cursor("", 0, 0), False, more=False)
    path = src.files[-1]
    relative = logdir.relative(path)
    try:
        found = tail(path, max(count, 1)) if relative is not None else None
    except OSError:
        found = None
    if found is None or relative is None:  # not made yet (the program just started), or pruned
        return _answer([], Cursor(relative or "", 0, 0), False, more=False)
    data = found.data
    offset = found.offset
    if path in src.writing and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        offset -= len(data) - keep
        data = data[:keep]
    lines = data.decode("utf-8", "replace").splitlines()[-count:] if count else []
    return _answer(lines, Cursor(relative, found.inode, offset), False, more=False)


def _since(logdir: LogDir, src: Source, since: float) -> Cursor:
    """The start of the instance that was running at ``since`` (the newest started before
    it), or of the first one started after it. Files keep no time per line."""
    start = int(since * 1e9)
    chosen = ""
    for path in src.files:
        relative = logdir.relative(path)
        if relative is None:
            continue
        if _ns(relative) <= start or not chosen:
            chosen = relative
        if _ns(relative) > start:
            break
    return _beginning(logdir, chosen) if chosen else Cursor("", 0, 0)


def _next_file(logdir: LogDir, src: Source, after: str | None) -> Cursor | None:
    """The start of the first instance file newer than ``after`` (by the start time in
    its name)."""
    start = _ns(after) if after else -1
    for path in src.files:
        relative = logdir.relative(path)
        if relative is not None and _ns(relative) > start:
            return _beginning(logdir, relative)
    return None


def _beginning(logdir: LogDir, relative: str) -> Cursor:
    """Where an instance's output begins: its oldest generation still there (the file may
    have been rotated before the reader got to it), else the file itself."""
    path = logdir.resolve(relative)
    if path is None:
        return Cursor(relative, 0, 0)  # not made yet: whatever comes first at that name
    for candidate in reversed([path, *generations(path, MAX_GENERATIONS)]):  # oldest first
        try:
            st = os.lstat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            return Cursor(relative, st.st_ino, 0)
    return Cursor(relative, 0, 0)


def _ns(path: str) -> int:
    match = _NS.search(path)
    return int(match.group(1)) if match else -1


def _answer(lines: list[str], cursor: Cursor, lost: bool, *, more: bool) -> dict[str, Any]:
    return {"lines": lines, "cursor": cursor.encode(), "file": cursor.file, "more": more, "lost": lost}
