"""Who may do what, for every transport: clients, throttled guesses, pings only.

The rules of SECURITY.md that do not depend on how a request arrived, so the HTTP
transport, the UDP transport and any third party's apply the very same ones:

* **A client** is what one attacker can cheaply be (:func:`client_key`): all of
  loopback is one client, an IPv6 /64 is one client, an IPv4 address is itself.
* **Guessing is throttled** across transports (:class:`Guesses`, one per Patrol): a
  client that sends ``FAILURES_ALLOWED`` wrong tokens, or wrong secrets of one item,
  within ``FAILURE_WINDOW`` seconds is refused for that credential for
  ``BLOCK_SECONDS``, even with the right one. Counted per (client, credential), so
  guessing one app's secret cannot lock out every other app's pings. Failures and
  refusals are logged at a bounded rate, naming the credential, never its value.
* **Pings only.** A request let in without the token (an HTTP ping carrying its app's
  secret, any UDP request while ``http.auth`` is on) must be a ping and nothing else
  (:func:`is_ping_only`): the secret that keeps an app alive must not also toggle it or
  write its key/values.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Protocol, TypeGuard

import structlog

from patrol.plugin.model import PatrolConfig
from patrol.util.ratelog import QuietLog

FAILURES_ALLOWED = 10
FAILURE_WINDOW = 60.0
BLOCK_SECONDS = 60.0
#: how many (address, credential) pairs and addresses are remembered: an attacker with
#: many addresses must not be able to grow Patrol's memory without bound
MAX_TRACKED = 10_000
#: the throttle's name for the HTTP token
TOKEN = "token"
log = structlog.get_logger("patrol.auth")


class Configured(Protocol):
    """Anything that knows the running config (the view transports are handed)."""

    @property
    def config(self) -> PatrolConfig: ...


def item_credential(group: str, item_id: str) -> str:
    """The throttle's name for the secret of one item."""
    return f"{group}/{item_id}"


#: the client key of every loopback address
LOOPBACK = "loopback"


@functools.lru_cache(maxsize=4096)  # asked on every request and datagram: parse each address once
def client_key(host: str) -> str:
    """Who a peer address is, for throttles and rate limits: what one attacker can
    cheaply be counts as one client. Every loopback address (127.0.0.0/8, ``::1``, and
    their IPv4-mapped forms) is ``"loopback"``: any local user can bind 127.0.0.2, and a
    count per address would give them 16 million. An IPv6 address is its /64 (one host
    usually gets a whole /64). An IPv4 address is itself."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])  # a zone index (fe80::1%eth0) is no new client
    except ValueError:
        return host or "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return LOOPBACK
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Throttle:
    """Failed attempts per (client, credential); too many block that pair for a while.

    ``client`` is a :func:`client_key`; callers with a peer address use :class:`Guesses`."""

    def __init__(self, allowed: int = FAILURES_ALLOWED, window: float = FAILURE_WINDOW,
                 block: float = BLOCK_SECONDS, clock: Callable[[], float] = time.monotonic,
                 max_tracked: int = MAX_TRACKED) -> None:
        self.allowed, self.window, self.block, self.clock = allowed, window, block, clock
        self.max_tracked = max_tracked
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._blocked: OrderedDict[tuple[str, str], float] = OrderedDict()

    def retry_after(self, client: str, credential: str) -> float:
        """Seconds until ``client`` may try ``credential`` again; 0 when it may now."""
        until = self._blocked.get((client, credential))
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._blocked[(client, credential)]
            return 0.0
        return left

    def failed(self, client: str, credential: str) -> bool:
        """Count a failure; True when it starts a block."""
        key, now = (client, credential), self.clock()
        times = self._failures.pop(key, None) or deque(maxlen=self.allowed)
        while times and now - times[0] > self.window:
            times.popleft()
        times.append(now)
        if len(times) >= self.allowed:
            self._blocked[key] = now + self.block
            _bound(self._blocked, self.max_tracked)
            return True
        self._failures[key] = times  # newest last, so the oldest are dropped first
        _bound(self._failures, self.max_tracked)
        return False


class RateLimit:
    """A token bucket per client address: ``rate`` requests per second, bursts of 2 x rate."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_tracked: int = MAX_TRACKED) -> None:
        self.clock = clock
        self.max_tracked = max_tracked
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, time)

    def allow(self, client: str, rate: float) -> bool:
        now, burst = self.clock(), max(2 * rate, 1.0)
        tokens, then = self._buckets.pop(client, (burst, now))
        tokens = min(burst, tokens + (now - then) * rate)
        allowed = tokens >= 1
        self._buckets[client] = (tokens - 1 if allowed else tokens, now)
        _bound(self._buckets, self.max_tracked)
        return allowed


def _bound(table: OrderedDict[Any, Any], size: int) -> None:
    while len(table) > size:
        table.popitem(last=False)


class Guesses:
    """Every transport's guesses of secrets and tokens, counted in one :class:`Throttle`.

    Over HTTP or UDP, a secret is the same secret: an attacker must not get ten guesses
    per minute per transport, nor unlimited ones over the transport that forgot to count.
    Addresses are turned into clients (:func:`client_key`) here, so no caller can count
    per address by mistake. Log lines are rate limited per (client, credential).
    """

    def __init__(self, throttle: Throttle | None = None, quiet: QuietLog | None = None) -> None:
        self.throttle = throttle or Throttle()
        self.quiet = quiet or QuietLog(log)

    def retry_after(self, address: str, credential: str, transport: str = "http") -> float:
        """Seconds ``address``'s client must wait before trying ``credential`` again
        (0 when it may now); a refused attempt is logged (rate limited)."""
        client = client_key(address)
        wait = self.throttle.retry_after(client, credential)
        if wait:
            self.quiet.emit(("refused", client, credential), "warning", "attempt refused: too many failed attempts",
                            client=client, address=address, credential=_name(credential), transport=transport,
                            seconds=round(wait))
        return wait

    def failed(self, address: str, credential: str, transport: str = "http") -> None:
        client = client_key(address)
        fields = {"client": client, "address": address, "credential": _name(credential), "transport": transport}
        if self.throttle.failed(client, credential):
            self.quiet.emit(("blocked", client, credential), "warning", "too many failed attempts: blocked",
                            seconds=self.throttle.block, **fields)
        else:
            self.quiet.emit(("failed", client, credential), "info", "authentication failed", **fields)


def _name(credential: str) -> str:
    """A credential as log lines name it (never its value)."""
    return "token" if credential == TOKEN else f"secret of {credential}"


def too_many(seconds: float) -> str:
    return f"Too Many Failed Attempts: wait {max(1, round(seconds))} s before trying again"


#: what a ping may carry; anything else (a toggle, key/values, history) is not a ping
PING_FIELDS = frozenset(("id", "group", "ping", "pid", "secret"))


def is_ping_only(request: Any) -> TypeGuard[dict[str, Any]]:
    """Is ``request`` a ping and nothing else? The one rule for every request let in
    without the token: HTTP pings carrying their app's secret, UDP with ``http.auth``."""
    return isinstance(request, dict) and request.get("ping") is True and request.keys() <= PING_FIELDS


def udp_allowed(patrol: Configured, request: Any) -> bool:
    """May this UDP request be handled? Always without http.auth; with it, pings only."""
    if patrol.config.http.auth is None:
        return True
    return is_ping_only(request)


def secret_credential(request: Any) -> str | None:
    """The throttle's name for the item whose secret an API request carries, if any."""
    if not isinstance(request, dict):
        return None
    secret, group, item_id = request.get("secret"), request.get("group"), request.get("id")
    if not (isinstance(secret, str) and secret and isinstance(group, str) and isinstance(item_id, str)):
        return None
    group = {"apps": "app", "services": "service"}.get(group.lower(), group.lower())
    return item_credential(group, item_id.lower())
