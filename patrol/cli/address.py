"""Where the running Patrol is, and the token it wants: for the client commands.

Where: ``--url``, else ``http.listen`` of ``--config FILE``, else ``$PATROL_URL``, else
the first address of ``$PATROL_HTTP`` (what Patrol gives its apps), else
``127.0.0.1:8421``. The token (sent as ``Authorization: Bearer``): ``--token-file``,
else ``--token``, else ``$PATROL_TOKEN_FILE``, else ``$PATROL_TOKEN``, else ``http.auth``
of ``--config FILE``. Standard library only, like the whole client.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_ADDRESS = "127.0.0.1:8421"


class ClientError(Exception):
    """Ends a command with a message and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code



def base_url(url: str | None, config: str | None) -> str:
    if url:
        return _as_url(url)
    if config:
        return _as_url(_listen_of(config))
    if os.environ.get("PATROL_URL"):
        return _as_url(os.environ["PATROL_URL"])
    advertised = os.environ.get("PATROL_HTTP")
    if advertised:
        try:
            first = json.loads(advertised)[0]
            if isinstance(first, str) and first:
                return _as_url(first)
        except (ValueError, IndexError, KeyError, TypeError):
            pass  # not what Patrol writes: fall through to the default
    return _as_url(DEFAULT_ADDRESS)


def _as_url(address: str) -> str:
    """``host:port`` or a URL -> a base URL; a wildcard host means this machine."""
    if "://" not in address:
        host, _, port = address.rpartition(":")
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host in ("[::]", "::"):
            host = "[::1]"
        address = f"http://{host}:{port}" if port else f"http://{address}"
    return address.rstrip("/")


def _listen_of(path: str) -> str:
    """``http.listen`` of a config file (JSON or TOML; keys case-insensitive, as Go's)."""
    listen = _key(_http_of(path), "listen")
    return listen if isinstance(listen, str) and listen else DEFAULT_ADDRESS


def token_of(args: argparse.Namespace) -> str | None:
    """The token to send, from the first place that has one (see the module docstring)."""
    if args.token_file:
        return _read_token(args.token_file)
    if args.token:
        return args.token
    if os.environ.get("PATROL_TOKEN_FILE"):
        return _read_token(os.environ["PATROL_TOKEN_FILE"])
    if os.environ.get("PATROL_TOKEN"):
        return os.environ["PATROL_TOKEN"]
    if args.config:
        auth = _key(_http_of(args.config), "auth")
        token, token_file = _key(auth, "token"), _key(auth, "token-file")
        if isinstance(token, str) and token:
            return token.strip()
        if isinstance(token_file, str) and token_file:
            return _read_token(os.path.join(os.path.dirname(os.path.abspath(args.config)), token_file))
    return None


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read(64 * 1024).strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read the token file {path}: {getattr(exc, 'strerror', None) or exc}",
                          EXIT_USAGE) from None
    if not token:
        raise ClientError(f"the token file {path} is empty", EXIT_USAGE)
    return token


def _http_of(path: str) -> Any:
    """The ``http`` section of a config file, as decoded."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if path.endswith(".toml"):
            import tomllib

            data: Any = tomllib.loads(raw.decode())
        else:
            data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read {path}: {exc}", EXIT_USAGE) from None
    return _key(data, "http")


def _key(data: Any, name: str) -> Any:
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and key.lower() == name:
                return value
    return None
