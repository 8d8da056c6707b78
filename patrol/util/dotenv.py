"""Env files (``env-file``): ``KEY=VALUE`` lines, read the way systemd reads
``EnvironmentFile=``, with dotenv's ``export`` and end-of-line comments.

* Empty lines and lines starting with ``#`` or ``;`` are comments; ``export KEY=VALUE``
  is ``KEY=VALUE``; blanks around the key and ``=`` do not count.
* An unquoted value ends at the end of the line (blanks at its end dropped) or at a
  ``#`` after a blank; a backslash makes the next character plain, and a backslash at
  the end of a line continues the value on the next one.
* ``'single quotes'`` keep everything up to the next ``'``, newlines included.
* ``"double quotes"`` too, except that a backslash before ``"``, ``\\``, ``$`` or a
  backquote makes that character plain, and a backslash before a newline joins the
  lines. After a closing quote only blanks and a comment may follow.
* Nothing is expanded (``$HOME`` stays as written), as systemd does.

Errors name the file and the line, never the text: an env file often holds secrets.
The file is opened through :mod:`patrol.util.safefile` (never blocking on a FIFO, a
regular file only, read with a bound).
"""

from __future__ import annotations

import re

from patrol.util.safefile import read_small_file

#: the largest env file read (the kernel's limit for a whole environment is about 2 MiB)
MAX_ENV_FILE = 1024 * 1024
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BLANK = " \t"


class EnvFileError(Exception):
    """An env file cannot be used: the message names the file and, for a syntax error, the line."""


def read_env_file(path: str) -> dict[str, str]:
    """The variables of the env file at ``path``, in order; :class:`EnvFileError` when
    it cannot be read or a line is malformed."""
    try:
        data, _ = read_small_file(path, MAX_ENV_FILE + 1)
    except OSError as exc:
        raise EnvFileError(f"env-file {path}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_ENV_FILE:
        raise EnvFileError(f"env-file {path}: is larger than {MAX_ENV_FILE} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise EnvFileError(f"env-file {path} line {line}: is not UTF-8 text") from None
    try:
        return parse(text)
    except _LineError as exc:
        raise EnvFileError(f"env-file {path} line {exc.line}: {exc.problem}") from None


class _LineError(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


def parse(text: str) -> dict[str, str]:
    """The variables of an env file's text (see the module docstring)."""
    if "\0" in text:
        raise _LineError(text.count("\n", 0, text.index("\0")) + 1, "holds a NUL character")
    lines = text.replace("\r\n", "\n").split("\n")
    found: dict[str, str] = {}
    n = 0
    while n < len(lines):
        number, line = n + 1, lines[n].lstrip(_BLANK)
        n += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("export") and line[6:7] in (" ", "\t"):
            line = line[6:].lstrip(_BLANK)
        key, equals, rest = line.partition("=")
        key = key.rstrip(_BLANK)
        if not equals:
            raise _LineError(number, "must be KEY=VALUE (no \"=\" found)")
        if not _NAME.fullmatch(key):
            raise _LineError(number, "the name before \"=\" must be letters, digits and \"_\", not starting "
                             "with a digit")
        value, n = _value(rest.lstrip(_BLANK), lines, n, number)
        found[key] = value
    return found


def _value(rest: str, lines: list[str], n: int, number: int) -> tuple[str, int]:
    """The value starting with ``rest`` (on line ``number``); it may take more lines:
    returns it and the index of the next line to read."""
    if rest[:1] in ("'", '"'):
        return _quoted(rest, lines, n, number)
    out: list[str] = []
    text, i = rest, 0
    while True:
        if i >= len(text):
            return "".join(out).rstrip(_BLANK), n
        c = text[i]
        if c == "\\":
            if i + 1 < len(text):
                out.append(text[i + 1])
                i += 2
                continue
            if n >= len(lines):  # a continuation at the end of the file
                return "".join(out).rstrip(_BLANK), n
            text, i, n = lines[n], 0, n + 1
            continue
        if c == "#" and (i == 0 or text[i - 1] in _BLANK):
            return "".join(out).rstrip(_BLANK), n
        out.append(c)
        i += 1


def _quoted(rest: str, lines: list[str], n: int, number: int) -> tuple[str, int]:
    quote, text, i = rest[0], rest, 1
    out: list[str] = []
    while True:
        if i >= len(text):  # the value goes on on the next line
            if n >= len(lines):
                raise _LineError(number, f"the quote {quote} opened here is never closed")
            out.append("\n")
            text, i, n = lines[n], 0, n + 1
            continue
        c = text[i]
        if c == quote:
            after = text[i + 1:].lstrip(_BLANK)
            if after and not after.startswith("#"):
                raise _LineError(n, "only a comment may follow a closing quote")
            return "".join(out), n
        if quote == '"' and c == "\\":
            if i + 1 >= len(text):  # backslash-newline: the lines are joined
                if n >= len(lines):
                    raise _LineError(number, f"the quote {quote} opened here is never closed")
                text, i, n = lines[n], 0, n + 1
                continue
            if text[i + 1] in '"\\$`':
                out.append(text[i + 1])
                i += 2
                continue
        out.append(c)
        i += 1
