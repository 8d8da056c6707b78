"""Log pages: the current instance's stdout/stderr, a tail of any log file with live
follow, the log directory browser, and the original's ``/stdout/``, ``/stderr/`` and
``/logs/`` URLs (kept for scripts, with ``?last=N`` implemented).

Files are only ever found through :class:`patrol.engine.logread.LogDir`, so no request can
read outside the app's log directory. Log text is served as ``text/plain`` with
``nosniff``, or escaped into a page: a log line can never become markup.

Everything that touches the log directory (resolving, listing, reading, each block of
a raw download) runs in a small thread pool of its own and is awaited at most :data:`FILE_TIMEOUT` seconds: a hung disk
makes a request fail with 503, never the loop wait, and cannot take the threads other
pages need. Only regular files are opened (see :mod:`patrol.logfiles`): a FIFO, device
or socket in the log directory is answered with 404 at once.
"""

from __future__ import annotations

import asyncio
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, AsyncIterator, BinaryIO, Callable, Mapping, TypeVar
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from patrol.web.gui import viewmodels as views
from patrol.util.safefile import NotRegularFile
from patrol.web.gui.core import JSON, utf8
from patrol.engine.logread import BLOCK, MAX_LINES, Chunk, LogDir, follow, open_raw, tail
from patrol.web.gui.pages import describe, log_url
from patrol.web.gui.security import secure

if TYPE_CHECKING:
    from patrol.engine.readside import AppView
    from patrol.web.gui.core import Gui

DEFAULT_LINES = 200
STREAMS = ("stdout", "stderr", "merged")
TEXT = "text/plain; charset=utf-8"
#: the longest a request waits for the log directory
FILE_TIMEOUT = 5.0
#: threads for log directory work (a hung disk can hold these, and nothing else)
FILE_THREADS = 8
#: a running app's current log file may be missing for a moment: right after the start
#: (a writer thread creates it) and at each rotation (renamed away, then made again); the
#: page looks this often, this many times, before it says the file is gone
APPEARS_EVERY, APPEARS_TRIES = 0.05, 40
T = TypeVar("T")


class FileTimeout(Exception):
    """The log directory did not answer within FILE_TIMEOUT."""


def _look(root: str, relative: str) -> tuple[LogDir, str | None, str]:
    """The log directory, the real path of ``relative`` in it, and what that is:
    ``dir``, ``file`` or ``other`` (a FIFO, socket or device)."""
    logdir = LogDir(root)
    path = logdir.resolve(relative)
    if path is None:
        return logdir, None, ""
    mode = os.stat(path).st_mode
    return logdir, path, "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _current(root: str, path: str) -> str | None:
    """``path`` (a current log file) relative to the log directory, if it is a file there."""
    logdir = LogDir(root)
    relative = logdir.relative(path)
    if relative is None or not stat.S_ISREG(os.stat(os.path.join(logdir.root, relative)).st_mode):
        return None
    return relative


def _follow(root: str, relative: str, offset: int, inode: int | None,
            current: str | None) -> tuple[Chunk | None, str | None]:
    chunk = follow(root, relative, offset, inode)
    return chunk, (LogDir(root).relative(current) if current else None)


class LogPages:
    def __init__(self, gui: "Gui") -> None:
        self.gui = gui
        self._threads = ThreadPoolExecutor(max_workers=FILE_THREADS, thread_name_prefix="patrol-gui-logs")

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the log threads, awaited at most FILE_TIMEOUT seconds."""
        future = asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)
        try:
            return await asyncio.wait_for(future, FILE_TIMEOUT)
        except asyncio.TimeoutError:
            raise FileTimeout(f"the log directory did not answer within {FILE_TIMEOUT:g} s") from None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/app/{id}/log/{stream}", self.current, methods=["GET", "HEAD"]),
            Route("/app/{id}/logs", self.to_browser, methods=["GET", "HEAD"]),
            Route("/app/{id}/logs/{path:path}", self.browse, methods=["GET", "HEAD"]),
            Route("/app/{id}/follow", self.follow, methods=["GET"]),
            Route("/stdout/", self.compat_std, methods=["GET", "HEAD"]),
            Route("/stderr/", self.compat_std, methods=["GET", "HEAD"]),
            Route("/logs/{path:path}", self.compat_logs, methods=["GET", "HEAD"]),
        ]

    # -- pages -----------------------------------------------------------------------

    async def current(self, request: Request) -> Response:
        """The last started instance's log of one stream, as a page with follow."""
        runner = self._app(request)
        if isinstance(runner, Response):
            return runner
        stream = request.path_params["stream"]
        files = views.current_logs(runner)
        if stream not in STREAMS:
            return self.gui.error(request, 404, "Unknown log", f"stream: must be one of {', '.join(STREAMS)}")
        path = files.get("merged") or files.get(stream)
        if path is None:
            why = ("stdout and stderr of this app are separate files (std-merge is off)" if stream == "merged"
                   and files else "the app has not been started yet, so it has no log")
            return self.gui.error(request, 404, "No log", why)
        relative = None
        for _ in range(APPEARS_TRIES):
            try:
                relative = await self._off_loop(_current, runner.config.log_root, path)
            except FileTimeout as exc:
                return self.gui.error(request, 503, "Log directory not answering", str(exc))
            except OSError:
                relative = None
            if relative is not None or not runner.state.running or path not in views.current_logs(runner).values():
                break  # there, or gone for good (the run ended, or a newer run has other files)
            await asyncio.sleep(APPEARS_EVERY)
        if relative is None:
            return self.gui.error(request, 404, "No log", f"the log file {path} no longer exists or is no file")
        return await self._viewer(request, runner, relative, path, stream)

    async def to_browser(self, request: Request) -> Response:
        return RedirectResponse(request.url.path + "/", 308)

    async def browse(self, request: Request) -> Response:
        """A directory listing, or a log file as a page (``?raw=1``: the file itself)."""
        runner = self._app(request)
        if isinstance(runner, Response):
            return runner
        root = runner.config.log_root
        relative = request.path_params["path"]
        try:
            logdir, path, kind = await self._off_loop(_look, root, relative)
        except FileTimeout as exc:
            return self.gui.error(request, 503, "Log directory not answering", str(exc))
        except OSError:
            path, kind = None, ""
        if path is None:
            return self.gui.error(request, 404, "Not found",
                                  f"{relative[:200]!r} does not exist in the log directory of {describe(runner)}")
        if kind == "other":
            return self.gui.error(request, 404, "Not a log file",
                                  f"{relative[:200]!r} is not a regular file (a FIFO, socket or device is never read)")
        if kind == "dir":
            try:
                entries = await self._off_loop(logdir.listing, path)
            except FileTimeout as exc:
                return self.gui.error(request, 503, "Log directory not answering", str(exc))
            except OSError as exc:
                return self.gui.error(request, 500, "Cannot read the directory", exc.strerror or str(exc))
            here = logdir.relative(path) or ""
            base = log_url(runner.id, here + "/" if here else "")
            return self._unlocking(request, runner, self.gui.render(request, "browse.html", {
                "runner": runner, "entries": entries, "base": base, "crumbs": _crumbs(runner.id, here),
                "parent": log_url(runner.id, os.path.dirname(here) + "/") if here else None,
                "root": logdir.root,
            }))
        if request.query_params.get("raw"):
            return await self._raw(request, path)
        return await self._viewer(request, runner, logdir.relative(path) or relative, path, "")

    async def follow(self, request: Request) -> Response:
        """What a log file got since ``offset`` (JSON), for the viewer's live follow.

        With ``stream``, the answer also names the current file of that stream, so a
        viewer of "the current log" moves on to the next instance's file after a restart.
        """
        runner = self._app(request, page=False)
        if isinstance(runner, Response):
            return runner
        query = request.query_params
        offset = query.get("offset", "0")
        if not (offset.isascii() and offset.isdigit()) or len(offset) > 18:
            return _json_error(400, f"offset: must be a non-negative integer (got {offset[:40]!r})")
        inode = query.get("inode", "")
        if inode and (not (inode.isascii() and inode.isdigit()) or len(inode) > 20):
            return _json_error(400, f"inode: must be the inode number a previous answer gave (got {inode[:40]!r})")
        stream = query.get("stream", "")
        current = None
        if stream:
            files = views.current_logs(runner)
            current = files.get("merged") or files.get(stream)
        name = query.get("file", "")
        try:
            chunk, current_relative = await self._off_loop(
                _follow, runner.config.log_root, name, int(offset), int(inode) if inode else None, current)
        except FileTimeout as exc:
            return _json_error(503, str(exc))
        except NotRegularFile:
            return _json_error(404, f"file: {name[:200]!r} is not a regular file (never read)")
        except OSError as exc:
            return _json_error(404, f"file: cannot read it ({exc.strerror or exc})")
        if chunk is None:
            return _json_error(404, f"file: {name[:200]!r} is not a file in the log directory")
        body: dict[str, Any] = {"text": chunk.text, "offset": chunk.offset, "reset": chunk.reset, "more": chunk.more,
                                "inode": str(chunk.inode), "rotated": chunk.rotated, "lost": chunk.lost}
        if stream:
            body["current"] = current_relative
        return secure(JSON(body))

    # -- the original's URLs ---------------------------------------------------------

    async def compat_std(self, request: Request) -> Response:
        """``/stdout/?group=app&id=ID[&secret=S][&last=N]``: the current log as text."""
        query = request.query_params
        problems = _unknown(query, {"group", "id", "secret", "last"})
        if problems:
            return _text_error(400, *problems)
        runner, status, message = self._compat_app(request)
        if runner is None:
            return _text_error(status, message)
        stream = request.url.path.strip("/")
        files = views.current_logs(runner)
        path = files.get("merged") or files.get(stream)
        if path is None:
            return _text_error(404, "404 log type doesn't exist: the app has no log yet")
        return await self._raw(request, path)

    async def compat_logs(self, request: Request) -> Response:
        """``/logs/<path>?group=app&id=ID``: now the browser at ``/app/ID/logs/<path>``."""
        problems = _unknown(request.query_params, {"group", "id", "secret"})
        if problems:
            return _text_error(400, *problems)
        runner, status, message = self._compat_app(request, check_secret=False)
        if runner is None:
            return _text_error(status, message)
        target = log_url(runner.id, request.path_params["path"])
        secret = request.query_params.get("secret")
        return RedirectResponse(target + (f"?{urlencode({'secret': secret})}" if secret else ""), 308)

    # -- helpers ---------------------------------------------------------------------

    def _app(self, request: Request, page: bool = True) -> "AppView | Response":
        """The app of the URL if its logs are open to this request, else the refusal
        (a page, or JSON for the follow requests of a script)."""
        item_id = request.path_params["id"]
        runner = self.gui.find_app(item_id)
        if runner is None:
            message = f"id: there is no app with the id {item_id[:70]!r}"
            return self.gui.error(request, 404, "Unknown app", message) if page else _json_error(404, message)
        if not self.gui.sees_private(request, runner):
            if not page:
                return _json_error(403, "secret: this app's logs need its secret")
            return self.gui.render(request, "locked.html", {"runner": runner, "next": request.url.path}, 403)
        return runner

    def _unlocking(self, request: Request, runner: "AppView", response: Response) -> Response:
        """A correct ``?secret=`` also opens the following pages (links carry no secret)."""
        if self.gui.secret_matches(runner, request.query_params.get("secret", "")):
            self.gui.guard.unlock(response, "app", runner.id, runner.config.secret)
        return response

    def _compat_app(self, request: Request, check_secret: bool = True) -> tuple[Any, int, str]:
        query = request.query_params
        if query.get("group", "") != "app":
            return None, 400, f"group: must be app, only apps have logs (got {query.get('group', '')[:40]!r})"
        runner = self.gui.find_app(query.get("id", ""))
        if runner is None:
            return None, 404, f"Unknown App: there is no app with the id {query.get('id', '')[:70]!r}"
        if check_secret and not self.gui.sees_private(request, runner):
            return None, 403, "Secret Invalid: this app's logs need its secret (secret=...)"
        return runner, 200, ""

    async def _viewer(self, request: Request, runner: "AppView", relative: str, path: str,
                      stream: str) -> Response:
        last = _last(request.query_params, DEFAULT_LINES)
        if isinstance(last, str):
            return self.gui.error(request, 400, "Bad line count", last)
        assert last is not None
        try:
            result = await self._off_loop(tail, path, last)
        except FileTimeout as exc:
            return self.gui.error(request, 503, "Log directory not answering", str(exc))
        except OSError as exc:
            return self.gui.error(request, 404, "Cannot read the log", exc.strerror or str(exc))
        follow = {"file": relative, **({"stream": stream} if stream else {})}
        file_url = log_url(runner.id, relative)
        return self._unlocking(request, runner, self.gui.render(request, "log.html", {
            "runner": runner,
            "stream": stream,
            "relative": relative,
            "tail": result,
            "last": last,
            "max_lines": MAX_LINES,
            "follow_url": f"/app/{runner.id}/follow?{urlencode(follow)}",
            "inode": str(result.inode),
            "file_url": file_url,
            "raw_url": f"{file_url}?raw=1",
            "crumbs": _crumbs(runner.id, relative),
        }))

    async def _raw(self, request: Request, path: str) -> Response:
        last = _last(request.query_params, None)
        if isinstance(last, str):
            return _text_error(400, last)
        try:
            if last is not None:
                result = await self._off_loop(tail, path, last)
                return secure(PlainTextResponse(utf8(result.text), media_type=TEXT))
            opened, size = await self._off_loop(open_raw, path)
        except FileTimeout as exc:
            return _text_error(503, str(exc))
        except OSError as exc:
            return _text_error(404, f"cannot read the log: {exc.strerror or exc}")
        response = StreamingResponse(self._download(opened, size), media_type=TEXT,
                                     headers={"Content-Length": str(size)})
        return secure(response)

    async def _download(self, f: BinaryIO, size: int) -> AsyncIterator[bytes]:
        """A log file's first ``size`` bytes in blocks, for a raw download.

        Each block is read in the log threads under FILE_TIMEOUT, as every other read of
        the log directory: a hung disk ends the download (the connection is closed)
        instead of pinning the threads starlette shares with other pages. A log that
        grows while it is sent must not overrun the Content-Length announced from ``size``.
        """
        left = size
        try:
            while left > 0:
                block = await self._off_loop(f.read, min(BLOCK, left))
                if not block:
                    return
                left -= len(block)
                yield block
        finally:
            self._close_later(f)

    def _close_later(self, f: BinaryIO) -> None:
        """Close ``f`` in the log threads: a read stuck on it holds its lock, so the close
        waits there for it, never on the loop."""
        try:
            self._threads.submit(f.close)
        except RuntimeError:  # the threads are shut down: Patrol is stopping
            pass


def _last(query: Mapping[str, str], default: int | None) -> int | None | str:
    """``?last=N`` as a line count, the default when absent, or the error message."""
    value = query.get("last")
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 6 or not 1 <= int(value) <= MAX_LINES:
        return f"last: must be a whole number of lines from 1 to {MAX_LINES} (got {value[:40]!r})"
    return int(value)


def _unknown(query: Mapping[str, str], known: set[str]) -> list[str]:
    return [f"{key}: unknown query parameter (known: {', '.join(sorted(known))})" for key in query if key not in known]


def _crumbs(item_id: str, relative: str) -> list[tuple[str, str]]:
    """(name, url) of each directory above a path in the log directory."""
    crumbs = [("logs", log_url(item_id, ""))]
    parts = [p for p in relative.split("/") if p]
    for i, part in enumerate(parts[:-1] if parts else []):
        crumbs.append((part, log_url(item_id, "/".join(parts[: i + 1]) + "/")))
    return crumbs


def _text_error(status: int, *messages: str) -> Response:
    return secure(PlainTextResponse(utf8("\n".join(messages) + "\n"), status, media_type=TEXT))


def _json_error(status: int, *messages: str) -> Response:
    return secure(JSON({"errors": list(messages)}, status))

