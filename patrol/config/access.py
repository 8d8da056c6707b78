"""(new) Who may use the listeners, and how much: ``http.auth``, ``http.insecure-no-auth``,
``http.rate-limit``, ``http.client-timeout``, ``http.max-connections``, ``udp.answer``, and
the same keys in ``metrics`` (the separate listener for scrapers).

The original Patrol had no authentication and told users never to expose it. Here an
HTTP listener that other machines can reach must have a token (``http.auth.token`` or,
better, ``http.auth.token-file``), or say ``"insecure-no-auth": true`` and get a loud
warning: a config that silently opens the API to a network is refused. UDP cannot be
authenticated at all, so a UDP listener beyond loopback is warned about (with
``http.auth`` on, the UDP API answers pings only: see patrol/web/auth.py).

Messages never show a token, not even a wrong one: they end up in logs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from dataclasses import replace
from typing import Any, Mapping

from patrol.plugin.model import AppConfig, HttpAuth, Listen
from patrol.util.safefile import read_small_file
from patrol.config.reader import BOOL, INT, NUMBER, OBJECT, STRING, Report, Section, show

TOKEN_MIN = 16
TOKEN_MAX = 1024
TOKEN_FILE_MAX = 64 * 1024
GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
#: ``http.client-timeout`` bounds (seconds): below, a slow but honest client is cut off
#: mid-request; above, an idle connection holds its slot for an hour
CLIENT_TIMEOUT = (0.1, 3600.0)
#: ``http.max-connections`` bounds
MAX_CONNECTIONS = (1, 65536)
#: ``udp.answer``: what the UDP transport answers (see patrol_keepalive_udp)
UDP_ANSWERS = ("full", "pings-only", "minimal")


#: what someone who reaches an unauthenticated listener can do, by section
EXPOSURE = {"http": "start and stop apps and read their logs",
            "metrics": "read the metrics (every item's name, state and resource use)"}


def read_http_access(sec: Section, listen: Listen, section: str = "http") -> Listen:
    """``listen`` with the access keys of the ``http`` (or ``metrics``) section ``sec``."""
    errors = len(sec.report.errors)
    auth = _auth(sec)
    auth_failed = len(sec.report.errors) > errors
    insecure = sec.get("insecure-no-auth", BOOL, False)
    rate = sec.get("rate-limit", NUMBER, Listen.rate_limit)
    if rate < 0:
        sec.report.error(sec.at("rate-limit"), f"must be at least 0 (got {rate:g}); 0 means no limit")
        rate = Listen.rate_limit
    if auth is None and not auth_failed and not is_loopback(listen.listen):
        if not insecure:
            sec.report.error(sec.at("listen"), f"{show(listen.listen)} accepts connections from other "
                             f"machines, and {section}.auth is not set: anyone who can connect could "
                             f"{EXPOSURE[section]}. Set {section}.auth.token-file (or token), listen on "
                             '127.0.0.1, or set "insecure-no-auth": true to accept that')
        else:
            what = "the HTTP API and web GUI" if section == "http" else "the metrics"
            sec.report.warn(sec.at("insecure-no-auth"), f"{what} on {show(listen.listen)} "
                            f"are open to anyone who can connect: they can {EXPOSURE[section]} "
                            f"(set {section}.auth to require a token)")
    elif insecure and auth is not None:
        sec.report.warn(sec.at("insecure-no-auth"),
                        f"is ignored: {section}.auth is set, so every request needs the token")
    elif insecure and not auth_failed:
        sec.report.warn(sec.at("insecure-no-auth"), "on a loopback address it only turns off the check that "
                        "keeps web pages from reaching Patrol through DNS rebinding (any Host is answered)")
    low, high = CLIENT_TIMEOUT
    timeout = sec.get("client-timeout", NUMBER, Listen.client_timeout)
    if not low <= timeout <= high:
        sec.report.error(sec.at("client-timeout"), f"must be between {low:g} and {high:g} seconds (got {timeout:g})")
        timeout = Listen.client_timeout
    low_n, high_n = MAX_CONNECTIONS
    connections = sec.get("max-connections", INT, Listen.max_connections)
    if not low_n <= connections <= high_n:
        sec.report.error(sec.at("max-connections"), f"must be between {low_n} and {high_n} (got {connections})")
        connections = Listen.max_connections
    return replace(listen, auth=auth, insecure_no_auth=insecure, rate_limit=rate, client_timeout=timeout,
                   max_connections=connections)


def read_udp_access(sec: Section, listen: Listen) -> Listen:
    """``listen`` with the ``udp`` section's ``answer``; warns when UDP leaves loopback."""
    answer = sec.get("answer", STRING, Listen.answer)
    if answer not in UDP_ANSWERS:
        sec.report.error(sec.at("answer"), f"must be one of {', '.join(map(json.dumps, UDP_ANSWERS))} "
                         f"(got {json.dumps(answer[:40])})")
        answer = Listen.answer
    warn_udp_beyond_loopback(sec, listen)
    return replace(listen, answer=answer)


def warn_udp_beyond_loopback(sec: Section, listen: Listen) -> None:
    """UDP has no authentication (and a forgeable source): say so when it leaves loopback."""
    if not is_loopback(listen.listen):
        sec.report.warn(sec.at("listen"), f"{show(listen.listen)} accepts datagrams from other machines, "
                        "and UDP cannot be authenticated: anyone who can send one can ping apps and, unless "
                        "http.auth is on (then UDP answers pings only), toggle items that have no secret")


def warn_unauthenticated_pings(report: Report, apps: Mapping[str, AppConfig], keepalives: Any,
                               http: Listen) -> None:
    """With http.auth, an HTTP ping without the token is let in only with the app's secret."""
    if http.auth is None:
        return
    for app in apps.values():
        if not app.secret and keepalives.get(app.keepalive).ping_transport == "http":
            report.warn(f"apps.{app.id}.secret", "is not set, but the app is kept alive by HTTP pings and "
                        "http.auth is on: its pings are refused unless it sends the token. Give it a "
                        "secret and make it send the secret with its pings")


def is_loopback(address: str) -> bool:
    """Is the host of ``host:port`` a loopback address? Empty (all interfaces) is not;
    a host name other than ``localhost`` is not known to be (no DNS at load time)."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or address.startswith("[") else address
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def _auth(parent: Section) -> HttpAuth | None:
    raw = parent.get("auth", OBJECT)
    if raw is None:
        return None
    sec = Section(raw, parent.at("auth"), parent.report)
    inline, path = sec.raw("token"), sec.raw("token-file")
    if inline is not None and path is not None:
        sec.report.error(sec.path, 'give "token" or "token-file", not both')
        sec.warn_unread()
        return None
    if inline is None and path is None:
        sec.report.error(sec.path, 'needs "token-file" (a file holding the token) or "token" '
                         f"(generate one with: {GENERATE})")
        sec.warn_unread()
        return None
    if inline is not None:
        token = _token(sec, "token", inline)
        if token is not None:
            _warn_if_others_can_read(sec, "token", _mode(sec.report.source), "the config file")
        source = sec.at("token")
    else:
        token = _token_file(sec, path)
        source = str(path)
    sec.warn_unread()
    return HttpAuth(token, source) if token is not None else None


def _token(sec: Section, key: str, value: Any) -> str | None:
    """The token if it follows the rules; else an error that does not show it."""
    if not isinstance(value, str):
        sec.report.error(sec.at(key), "must be a string")
        return None
    value = value.strip()
    problem = None
    if len(value) < TOKEN_MIN:
        problem = f"must be at least {TOKEN_MIN} characters (got {len(value)}); generate one with: {GENERATE}"
    elif len(value) > TOKEN_MAX:
        problem = f"must be at most {TOKEN_MAX} characters (got {len(value)})"
    elif not all("!" <= c <= "~" for c in value):
        problem = "may only contain printable ASCII characters, without spaces (it travels in an HTTP header)"
    if problem:
        sec.report.error(sec.at(key), problem)
        return None
    return value


def _token_file(sec: Section, path: Any) -> str | None:
    key = "token-file"
    if not isinstance(path, str) or not path:
        sec.report.error(sec.at(key), "must be the path of a file holding the token")
        return None
    full = path if os.path.isabs(path) or not sec.report.base_dir else os.path.join(sec.report.base_dir, path)
    try:  # as a pid file: a FIFO or device here is refused at once, never waited on
        data, info = read_small_file(full, TOKEN_FILE_MAX + 1)
    except OSError as exc:
        sec.report.error(sec.at(key), f"cannot read {_quoted(full)}: {exc.strerror or exc}")
        return None
    if len(data) > TOKEN_FILE_MAX:
        sec.report.error(sec.at(key), f"{_quoted(full)} is larger than {TOKEN_FILE_MAX} bytes: not a token file")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        sec.report.error(sec.at(key), f"{_quoted(full)} is not UTF-8 text")
        return None
    lines = text.strip().splitlines()
    if len(lines) != 1:
        sec.report.error(sec.at(key), f"{_quoted(full)} must hold the token on one line (it has {len(lines)})")
        return None
    token = _token(sec, key, lines[0])
    if token is not None:
        _warn_if_others_can_read(sec, key, info.st_mode, _quoted(full))
    return token


def _quoted(path: str) -> str:
    """A path in full (``show`` would shorten it), as JSON."""
    return json.dumps(path, ensure_ascii=False)


def _mode(path: str) -> int | None:
    """The mode of the config file (``stat`` only: it never opens what it finds)."""
    try:
        return os.stat(path).st_mode
    except OSError:
        return None  # not a file (a config parsed from memory): nothing to check


def _warn_if_others_can_read(sec: Section, key: str, mode: int | None, what: str) -> None:
    """As ssh does for keys: a token other users can read is no secret."""
    if mode is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
        sec.report.warn(sec.at(key), f"{what} is readable or writable by other users (mode "
                        f"{stat.S_IMODE(mode):04o}), so they can read the token: chmod 600 it")
