"""The original Patrol's rules for ids, paths and names, as plain functions.

Each ``*_problem`` function returns the rule a value breaks, worded for a user, or None.
"""

from __future__ import annotations

import os
import re
import signal

from patrol.plugin.model import clean

ID_MAX = 63
NAME_MAX = 255
SERVICE_MAX = 63
SECRET_MAX = 128

_ID = re.compile(r"[0-9A-Za-z](?:[0-9A-Za-z-]{0,61}[0-9A-Za-z])?")
_SERVICE = re.compile(r"[0-9A-Za-z._@-]+")


def is_app_service_id(value: str) -> bool:
    """1..63 characters of ``0-9 A-Z a-z -``, not starting or ending with ``-``."""
    return _ID.fullmatch(value) is not None


def id_problem(value: str) -> str | None:
    if value == "":
        return "is empty"
    if not is_app_service_id(value):
        return ('is invalid: ids are 1..63 characters of 0-9, A-Z, a-z and "-", '
                'not starting or ending with "-"')
    return None


def is_path_clean(path: str) -> bool:
    """Go's ``IsPathClean``: ``filepath.Clean`` leaves it alone, up to one trailing ``/``."""
    if path in ("", "."):
        return False
    cleaned = clean(path)
    if cleaned == ".":
        return False
    return cleaned == path or (cleaned != "/" and cleaned + "/" == path)


def path_problem(path: str) -> str | None:
    if "\0" in path:
        return "must not contain a NUL character"
    if not is_path_clean(path):
        return f'must be a clean path (got "{path}", which cleans to "{clean(path)}")'
    return None


def byte_length(text: str) -> int:
    """Length in bytes as Go counts it (limits are in bytes, not characters)."""
    return len(text.encode("utf-8", "surrogatepass"))


def service_problem(name: str) -> str | None:
    """The service name becomes ``/etc/init.d/NAME`` or an argument of ``service``.

    The original accepted anything, so a name with ``/`` or ``..`` ran a script outside
    the init.d directory (path traversal); these rules keep
    every real service name and nothing that leaves the directory or reads as an option.
    """
    if "/" in name:
        return f'must not contain "/" (got "{name}"): it would name a path outside /etc/init.d'
    if name in (".", ".."):
        return f'must not be "." or ".." (got "{name}")'
    if name.startswith("-"):
        return f'must not start with "-" (got "{name}"): it would be read as an option'
    if not _SERVICE.fullmatch(name):
        return f'may only contain 0-9, A-Z, a-z, "-", ".", "_" and "@" (got "{name}")'
    return None


def signal_number(value: int | str) -> int | None:
    """A signal given as a number or a name (``"SIGTERM"``, ``"term"``), or None."""
    if isinstance(value, int):
        return value if value in signal.valid_signals() else None
    if value.isdigit():
        return signal_number(int(value))
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    member = signal.Signals.__members__.get(name)
    return int(member) if member is not None else None


CONFIG_DIR = "${CONFIG_DIR}"


def expand_config_dir(path: str, base_dir: str) -> str:
    """(new) ``${CONFIG_DIR}/x`` -> the config file's directory + ``/x``.

    Lets a config that travels with its programs (the examples, a repository checkout)
    name them without knowing where it was cloned. Original configs never contain it.
    """
    if not path.startswith(CONFIG_DIR) or not base_dir:
        return path
    rest = path[len(CONFIG_DIR):]
    if rest and not rest.startswith("/"):
        return path
    return base_dir.rstrip("/") + rest if rest not in ("", "/") else base_dir


def expand_home(path: str) -> str:
    """``~/x`` -> ``$HOME/x``; anything else, or no usable home, stays as written.

    As the original, only ``~/`` is expanded (no ``~user``, no bare ``~``); a path left
    relative then fails the absolute-path rule.
    """
    if not path.startswith("~/"):
        return path
    # $HOME, else the password database (expanduser); an empty $HOME means "no home"
    home = os.environ["HOME"] if "HOME" in os.environ else os.path.expanduser("~")
    if not home.startswith("/"):
        return path
    return home.rstrip("/") + path[1:]
