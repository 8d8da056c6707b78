"""Patrol's first-party probes: ``tcp``, ``http``, ``exec`` and ``log``.

Each answers one look, on the event loop, never blocking it: ``tcp`` and ``http`` use
asyncio's own sockets; ``exec`` runs its program through Patrol's one spawn path (the
app's environment and working directory, the one reaper, its process group killed at
the timeout); ``log`` listens to the lines of the app's current run as Patrol reads
them and asks for a look as soon as its pattern appears. Patrol bounds every look by
the probe's ``timeout``.

    "readiness": {"tcp": 5432, "period": 1}
    "readiness": {"http": {"url": "http://127.0.0.1:8080/health", "status": "200-299", "contains": "ok"}}
    "liveness": {"exec": ["pg_isready", "-q"], "period": 10, "failure-threshold": 3}
    "readiness": {"log": {"pattern": "listening on port \\\\d+", "stream": "stdout"}}
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from typing import Any, Mapping
from urllib.parse import urlsplit

from patrol import Cancellable, Option, Probe, ProbeResult, Register, hookimpl

#: the most of an HTTP answer that is read: its head, and the body a ``contains`` looks in
MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
#: the longest pattern a ``log`` probe takes
MAX_PATTERN = 1000


def _why(exc: BaseException) -> str:
    """An OSError as people read it (asyncio's connect errors carry no strerror of their own)."""
    errno = getattr(exc, "errno", None)
    return os.strerror(errno) if isinstance(errno, int) and errno else str(exc) or type(exc).__name__


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _port_problem(value: Any) -> str | None:
    return None if 1 <= value <= 65535 else f"must be a port 1..65535 (got {value})"


class TcpProbe(Probe):
    """Passes while ``host:port`` accepts a TCP connection."""

    name = "tcp"
    shorthand = "port"
    options = (Option("port", int, 0, "the port to connect to", _port_problem),
               Option("host", str, "127.0.0.1", "the host to connect to"))

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [("port", "is required (1..65535)")] if not settings["port"] else []

    async def check(self) -> ProbeResult:
        host, port = self.settings["host"], self.settings["port"]
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            return ProbeResult(False, f"{host}:{port}: {_why(exc)}")
        writer.close()
        return ProbeResult(True, f"{host}:{port} accepts connections")


def parse_status(value: Any) -> tuple[int, int] | None:
    """``200``, ``"200"`` or ``"200-399"`` as an inclusive range; None when it is none."""
    text = str(value).strip()
    low, _, high = text.partition("-")
    if not low.strip().isdigit() or (high and not high.strip().isdigit()):
        return None
    first, last = int(low), int(high) if high else int(low)
    return (first, last) if 100 <= first <= last <= 599 else None


class HttpProbe(Probe):
    """Passes when a GET of ``url`` answers with a status in ``status`` (and, with
    ``contains``, a body holding that text in its first 64 KiB)."""

    name = "http"
    shorthand = "url"
    options = (Option("url", str, "", "http:// or https:// URL to GET"),
               Option("status", (str, int), "200-399", "the statuses that pass: 200, or a range 200-399"),
               Option("contains", str, "", "text the body must contain"),
               Option("host-header", str, "", "the Host header to send (default: the URL's)"))

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = []
        for key in ("url", "host-header"):  # they go onto the request line and a header verbatim
            if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in settings[key]):
                problems.append((key, f"must be one line without spaces or control characters "
                                      f"(got {settings[key]!r})"))
        if problems:
            return problems
        url = urlsplit(settings["url"])
        if url.scheme not in ("http", "https") or not url.hostname:
            problems.append(("url", f"must be an http:// or https:// URL with a host (got {settings['url']!r})"))
        if parse_status(settings["status"]) is None:
            problems.append(("status", f"must be a status such as 200 or a range such as 200-399, within "
                             f"100..599 (got {settings['status']!r})"))
        return problems

    async def check(self) -> ProbeResult:
        url = urlsplit(self.settings["url"])
        low, high = parse_status(self.settings["status"]) or (200, 399)
        secure = url.scheme == "https"
        host = url.hostname or "127.0.0.1"
        port = url.port or (443 if secure else 80)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if secure else None, limit=MAX_HEAD)
        except (OSError, ssl.SSLError) as exc:
            return ProbeResult(False, f"{url.netloc}: {_why(exc)}")
        try:
            wire_host = self.settings["host-header"] or url.netloc.rpartition("@")[2]
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {wire_host}\r\nUser-Agent: patrol-probe\r\n"
                         "Accept: */*\r\nConnection: close\r\n\r\n".encode("latin-1", "replace"))
            status, headers = await self._head(reader)
            if status is None:
                return ProbeResult(False, "not an HTTP answer")
            if not low <= status <= high:
                return ProbeResult(False, f"HTTP {status} (passes: {low}-{high})")
            wanted = self.settings["contains"]
            if wanted:
                body = await self._body(reader, headers)
                if wanted not in body.decode(errors="replace"):
                    return ProbeResult(False, f"HTTP {status}, but the body lacks {_short(wanted, 60)!r}")
            return ProbeResult(True, f"HTTP {status}")
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            return ProbeResult(False, f"{url.netloc}: {type(exc).__name__}: {exc}")
        finally:
            writer.close()

    @staticmethod
    async def _head(reader: asyncio.StreamReader) -> tuple[int | None, dict[str, str]]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return None, {}
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    @staticmethod
    async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        """At most MAX_BODY bytes of the body (chunked answers decoded)."""
        if "chunked" not in headers.get("transfer-encoding", "").lower():
            length = headers.get("content-length", "")
            size = min(int(length), MAX_BODY) if length.isdigit() else MAX_BODY
            return await reader.read(size) if size else b""
        body = b""
        while len(body) < MAX_BODY:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            take = min(size, MAX_BODY - len(body))
            body += await reader.readexactly(take)
            if take < size:
                break
            await reader.readexactly(2)  # the chunk's CRLF
        return body


def _command_problem(value: Any) -> str | None:
    if not value or not all(isinstance(v, str) and v and "\0" not in v for v in value):
        return "must be a non-empty array of non-empty strings (the program, then its arguments)"
    return None


class ExecProbe(Probe):
    """Passes when ``command`` exits 0 within the timeout (it runs as the app does: its
    environment and working directory; for a service, as its commands do)."""

    name = "exec"
    shorthand = "command"
    options = (Option("command", list, [], "the program and its arguments", _command_problem),)

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [("command", "is required: the program and its arguments")] if not settings["command"] else []

    async def check(self) -> ProbeResult:
        outcome = await self.target.run(list(self.settings["command"]), self.target.timeout)
        said = _short(outcome.output.strip().splitlines()[-1]) if outcome.output.strip() else ""
        if outcome.status is None:
            return ProbeResult(False, f"cannot run {self.settings['command'][0]}: {outcome.error}")
        if outcome.timed_out:
            return ProbeResult(False, f"killed after {self.target.timeout:g} s")
        if outcome.status.code == 0:
            return ProbeResult(True, said or "exit code 0")
        return ProbeResult(False, f"{outcome.status}" + (f": {said}" if said else ""))


def _pattern_problem(value: Any) -> str | None:
    if not value:
        return "must not be empty"
    if len(value) > MAX_PATTERN:
        return f"must be at most {MAX_PATTERN} characters"
    try:
        re.compile(value)
    except re.error as exc:
        return f"is not a regular expression: {exc}"
    return None


def _stream_problem(value: Any) -> str | None:
    return None if value in ("any", "stdout", "stderr") else f'must be "any", "stdout" or "stderr" (got {value!r})'


def _within_problem(value: Any) -> str | None:
    return None if 0 <= value <= 86400 else f"must be 0..86400 seconds (got {value})"


class LogProbe(Probe):
    """Passes once ``pattern`` (a regular expression) appears in a line of the app's
    current run; with ``within``, only while it appeared in the last ``within`` seconds
    (a heartbeat line, for liveness). Lines are matched as Patrol reads them, on the
    loop: keep the pattern simple (no nested repetition such as ``(a+)+``)."""

    name = "log"
    shorthand = "pattern"
    apps_only = True
    options = (Option("pattern", str, "", "a regular expression (Python's re), searched in each line",
                      _pattern_problem),
               Option("stream", str, "any", "any, stdout or stderr", _stream_problem),
               Option("within", (int, float), 0, "seconds a match counts (0: for the whole run)", _within_problem))

    @classmethod
    def validate(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [("pattern", "is required: a regular expression")] if not settings["pattern"] else []

    def start(self) -> None:
        self.regex = re.compile(self.settings["pattern"])
        self.seen_at: float | None = None
        self.line = ""
        self.subscription: Cancellable | None = self.target.watch_output(self._line)
        self.unreadable = self.subscription is None

    def _line(self, stream: str, line: str) -> None:
        wanted = self.settings["stream"]
        if wanted != "any" and stream not in (wanted, "stdmerge"):
            return
        if self.regex.search(line):
            self.seen_at, self.line = self.target.now(), line
            self.target.check_now()
            if not self.settings["within"] and self.subscription is not None:
                self.subscription.cancel()  # seen for the whole run: no more matching needed
                self.subscription = None

    async def check(self) -> ProbeResult:
        if self.unreadable:
            return ProbeResult(False, "the app's output is not read by Patrol (adopted from an older Patrol)")
        if self.seen_at is None:
            return ProbeResult(False, f"not seen yet: /{_short(self.settings['pattern'], 60)}/")
        age = self.target.now() - self.seen_at
        within = self.settings["within"]
        if within and age > within:
            return ProbeResult(False, f"last seen {age:.0f} s ago (more than {within:g} s)")
        return ProbeResult(True, f"seen: {_short(self.line)}")

    def stop(self) -> None:
        subscription = getattr(self, "subscription", None)
        if subscription is not None:
            subscription.cancel()
        self.subscription = None


@hookimpl
def patrol_register_probes(register: Register[Probe]) -> None:
    for probe in (TcpProbe, HttpProbe, ExecProbe, LogProbe):
        register(probe)
