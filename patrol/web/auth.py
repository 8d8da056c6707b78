"""Who may use the HTTP API and the web GUI: the token, login sessions, and limits.

The threat model is in SECURITY.md. In short:

* With ``http.auth`` in the config, every HTTP request needs the token: in
  ``Authorization: Bearer <token>`` (or as the password of Basic auth, any user name),
  or through the session cookie that the GUI's login form sets (HttpOnly,
  SameSite=Strict, signed with a key derived from the token, so changing the token ends
  every session). Only the login page and the static files are open without it.
* One exception keeps apps alive: an HTTP **ping** of an app that has a ``secret``,
  carrying that secret, is let in without the token. The secret is the app's own
  credential (the original protocol already sends it with every ping), and it only ever
  gives power over that one app. Apps without a secret must send the token.
* **Guessing is throttled**, over HTTP and UDP alike (:class:`Guesses`, one per Patrol).
  A client that sends ``FAILURES_ALLOWED`` wrong tokens, or wrong secrets of one item,
  within ``FAILURE_WINDOW`` seconds is refused for that credential for
  ``BLOCK_SECONDS``, even with the right one (HTTP: 429; UDP: silence). A client is
  what one attacker can cheaply be (:func:`client_key`): all of loopback (127.0.0.0/8,
  ::1, IPv4-mapped forms) is one client, and so is an IPv6 /64. It is counted per
  (client, credential), so someone guessing one app's secret cannot lock out the pings
  of every other app on the machine. Failures and refusals are logged at a bounded rate
  (:mod:`patrol.util.ratelog`), with the client and the credential's name, never the value.
* **Request rate.** Clients beyond loopback (:func:`client_key`) may send at most
  ``http.rate-limit`` requests per second each (bursts of twice that); loopback is
  exempt, because every local app pings from it and a cap there would only hurt them.
* **Pings only.** The token-less HTTP ping above and every UDP request with ``http.auth``
  on (UDP cannot carry a token) pass the same check, :func:`is_ping_only`: a ping and
  nothing else (no toggle, no key/values). Otherwise a secret that keeps an app alive
  would also toggle it and write its key/values past the token, and any local user could
  toggle items over UDP.
* Client addresses are the socket's: ``X-Forwarded-For`` is never believed.
* **DNS rebinding.** Without ``http.auth``, a web page could point a name it controls at
  127.0.0.1 and then talk to Patrol "same-origin", past every cross-site check. Such a
  request names that host in ``Host``, so without auth (and without
  ``insecure-no-auth``) only requests addressed to an IP address or ``localhost`` are
  answered.

Secrets and tokens are compared in constant time (of hashes, so not even their length
leaks) and never logged; failures are logged with the client address only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import ipaddress
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import structlog
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patrol.api.wire import SESSION_COOKIE, validate_request
from patrol.util import strictjson
from patrol.util.compare import same_secret
from patrol.config.access import is_loopback
from patrol.api.access import (LOOPBACK, TOKEN, RateLimit, client_key, is_ping_only, item_credential,
                               too_many)

if TYPE_CHECKING:
    from typing import Callable

    from patrol.plugin.model import HttpAuth, Listen
    from patrol.api.view import KernelView

#: the request scope's keys: the shared :class:`Access`, and how the request got in
ACCESS_KEY = "patrol.access"
HOW_KEY = "patrol.auth"
SESSION_SECONDS = 12 * 3600
#: the largest request body read to see whether it is a ping (the API's own limit)
MAX_PING_BODY = 64 * 1024
OPEN_PATHS = ("/login", "/logout")
OPEN_PREFIXES = ("/static/",)
log = structlog.get_logger("patrol.auth")


def client_of(scope: Scope) -> str:
    """The peer address of the connection (IPv4-mapped IPv6 written as IPv4)."""
    client = scope.get("client")
    host = client[0] if client else ""
    if host.startswith("::ffff:"):
        host = host[7:]
    return host or "unknown"


@functools.lru_cache(maxsize=1024)
def host_is_address(host: str) -> bool:
    """Does a ``Host`` header name an IP address or localhost (never a rebindable name)?"""
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        name = host.partition(":")[0]
    else:
        name = host  # no port, or a bare IPv6 address
    if name.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Access:
    """The access state of one HTTP listener, shared by the gate and the login page.

    ``settings`` gives the listener's section of the config (default ``http``; the
    metrics listener passes ``metrics``), read on each use: a reload may change it.
    ``login``: the listener has the login page (browsers without a token go there).
    """

    def __init__(self, view: "KernelView", settings: "Callable[[], Listen] | None" = None,
                 login: bool = True) -> None:
        self.view = view
        self._settings = settings or (lambda: view.config.http)
        self.login = login
        #: what is actually bound: a reload may change the config, not the socket
        self.listen = self.http.listen
        self.guesses = view.guesses
        self.rate = RateLimit()
        self._last_auth: HttpAuth | None = None
        self._kept_warned = False
        if self.auth is None and not is_loopback(self.listen):
            log.warning("the HTTP API and web GUI accept requests from anyone who can connect: "
                        "http.auth is not set (insecure-no-auth)", listen=self.listen)

    @property
    def http(self) -> "Listen":
        """The listener's section of the running config."""
        return self._settings()

    @property
    def auth(self) -> "HttpAuth | None":
        """The current ``http.auth``. A reload that removes it while Patrol still listens
        beyond loopback (without insecure-no-auth) does not open the door: the last
        token stays until Patrol restarts."""
        http = self.http
        if http.auth is not None:
            self._last_auth = http.auth
            return http.auth
        if self._last_auth is not None and not is_loopback(self.listen) and not http.insecure_no_auth:
            if not self._kept_warned:
                self._kept_warned = True
                log.warning("http.auth was removed by a reload, but Patrol still listens beyond loopback: "
                            "the previous token stays in force until Patrol restarts", listen=self.listen)
            return self._last_auth
        return None

    # -- credentials -----------------------------------------------------------------

    def token_ok(self, given: str) -> bool:
        auth = self.auth
        return auth is not None and same_secret(given, auth.token)

    def new_session(self) -> str:
        """A session cookie value: its expiry and a MAC of it under the token's key."""
        expires = int(time.time()) + SESSION_SECONDS
        return f"{expires}.{self._session_mac(expires)}"

    def session_ok(self, value: str) -> bool:
        expires, _, mac = value.partition(".")
        if not expires.isdigit() or len(expires) > 12 or int(expires) < time.time():
            return False
        expected = self._session_mac(int(expires))
        return bool(expected) and same_secret(mac, expected)

    def _session_mac(self, expires: int) -> str:
        auth = self.auth
        if auth is None:
            return ""
        key = hashlib.sha256(b"patrol-session\0" + auth.token.encode()).digest()
        return hmac.new(key, str(expires).encode(), hashlib.sha256).hexdigest()

    # -- throttling ------------------------------------------------------------------

    def retry_after(self, address: str, credential: str) -> float:
        return self.guesses.retry_after(address, credential)

    def failed(self, address: str, credential: str) -> None:
        self.guesses.failed(address, credential)


# -- helpers for handlers --------------------------------------------------------------


def access_of(conn: HTTPConnection) -> Access | None:
    return conn.scope.get(ACCESS_KEY)


def retry_after(conn: HTTPConnection, credential: str) -> float:
    """Seconds this request's client must wait before trying ``credential`` again."""
    access = access_of(conn)
    return access.retry_after(client_of(conn.scope), credential) if access else 0.0


def record_failure(conn: HTTPConnection, credential: str) -> None:
    access = access_of(conn)
    if access is not None:
        access.failed(client_of(conn.scope), credential)


def here(conn: HTTPConnection) -> str:
    """The request's path and query, to come back to: without ``secret``. A URL may carry
    one (the original's log links did); it must not be echoed into pages and redirects."""
    query = urlencode([(k, v) for k, v in conn.query_params.multi_items() if k != "secret"])
    return conn.url.path + (f"?{query}" if query else "")


# -- the gate --------------------------------------------------------------------------


class Gate:
    """ASGI middleware in front of every HTTP route: rate limit, then authentication."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.check(scope)
        if isinstance(refusal, BodyNeeded):
            body, receive = await _buffer(receive)
            refusal = self.check_ping(scope, body)
        if refusal is not None:
            self.count(scope, refusal)
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def check(self, scope: Scope, conn: HTTPConnection | None = None) -> "Response | None | BodyNeeded":
        """The refusal of a request (``conn``: its Request, if made already), or None to
        let it in, or :class:`BodyNeeded` (a token-less ping: :meth:`check_ping` decides)."""
        scope[ACCESS_KEY] = self.access
        conn = HTTPConnection(scope) if conn is None else conn
        refusal = self._screen(conn)
        return self._authenticate(conn) if refusal is None else refusal

    def count(self, scope: Scope, refusal: Response) -> None:
        """An API request refused: counted as the API's own answers are."""
        if scope["path"] == "/api/":
            self.access.view.api.requests.count("http", refusal.status_code)

    def _screen(self, conn: HTTPConnection) -> Response | None:
        """Refusals before any credential is looked at: the rate limit, DNS rebinding."""
        http = self.access.http
        client = client_of(conn.scope)
        if http.rate_limit and client_key(client) != LOOPBACK and \
                not self.access.rate.allow(client_key(client), http.rate_limit):
            return problem(429, f"Too Many Requests: at most {http.rate_limit:g} requests per second per client",
                           {"Retry-After": "1"})
        if self.access.auth is None and not http.insecure_no_auth:
            host = conn.headers.get("host", "")
            if host and not host_is_address(host):
                return problem(403, f"Host {json.dumps(host[:60])} refused: without http.auth, Patrol only answers "
                               "requests addressed to an IP address or localhost (a web page could otherwise "
                               "reach it through DNS rebinding); use the address, or set http.auth")
        return None

    def _authenticate(self, conn: HTTPConnection) -> "Response | None | BodyNeeded":
        """The refusal, None, or :class:`BodyNeeded`; notes in the scope how the request
        got in (``HOW_KEY``)."""
        scope, auth, path = conn.scope, self.access.auth, conn.scope["path"]
        if auth is None or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            scope[HOW_KEY] = "open" if auth is None else None
            return None
        client = client_of(scope)
        header = conn.headers.get("authorization")
        if header is not None:
            scope[HOW_KEY] = "token"
            return self._check_header(header, client)
        if self.access.session_ok(conn.cookies.get(SESSION_COOKIE, "")):
            scope[HOW_KEY] = "session"
            return None
        if scope["method"] == "POST" and path == "/api/":
            return BodyNeeded()
        return self._unauthenticated(conn, self.access.login)

    def _check_header(self, header: str, client: str) -> Response | None:
        scheme, _, value = header.strip().partition(" ")
        given = credential(scheme.lower(), value.strip())
        if given is None:
            return problem(401, "Authentication required: use Authorization: Bearer <token> "
                           "(or Basic with the token as the password)")
        wait = self.access.retry_after(client, TOKEN)
        if wait:
            return problem(429, too_many(wait), {"Retry-After": str(max(1, round(wait)))})
        if self.access.token_ok(given):
            return None
        self.access.failed(client, TOKEN)
        return problem(401, "Authentication failed: the token is wrong")

    def check_ping(self, scope: Scope, body: bytes | None) -> Response | None:
        """None when ``body`` (None: over MAX_PING_BODY) is a ping carrying its app's
        right secret, else the refusal."""
        scope[HOW_KEY] = "ping"
        client = client_of(scope)
        secret, runner = self._ping_of(body)
        if runner is None or secret is None:
            return problem(401, REQUIRED)
        credential = item_credential("app", runner.id)
        wait = self.access.retry_after(client, credential)
        if wait:
            return problem(429, too_many(wait), {"Retry-After": str(max(1, round(wait)))})
        if same_secret(secret, runner.config.secret):
            return None
        self.access.failed(client, credential)
        return problem(401, REQUIRED)

    def _ping_of(self, body: bytes | None) -> tuple[str | None, Any]:
        """(secret, app) of an HTTP ping of an app with a secret, else (None, None).

        Only a valid request that is a ping and nothing else (:func:`is_ping_only`) is
        one: the secret that keeps an app alive opens nothing more without the token."""
        try:
            request = strictjson.loads(body) if body else None
        except (ValueError, RecursionError):
            return None, None
        if not is_ping_only(request) or validate_request(request):
            return None, None
        group, item_id, secret = request.get("group"), request.get("id"), request.get("secret")
        if not (isinstance(group, str) and isinstance(item_id, str) and isinstance(secret, str) and secret):
            return None, None
        if group.lower() not in ("app", "apps"):
            return None, None
        runner = self.access.view.supervisor.find("app", item_id.lower())
        if runner is None or not runner.config.secret or runner.ping_transport != "http":
            return None, None
        return secret, runner

    @staticmethod
    def _unauthenticated(conn: HTTPConnection, login: bool) -> Response:
        """A browser asking for a page goes to the login form; everything else gets 401."""
        if login and conn.scope["method"] in ("GET", "HEAD") and "text/html" in conn.headers.get("accept", ""):
            return RedirectResponse(f"/login?next={quote(here(conn), safe='/')}", 303)
        return problem(401, REQUIRED)


class BodyNeeded:
    """Only the request's body can tell whether it may come in (a token-less ping)."""


REQUIRED = ("Authentication required: send Authorization: Bearer <token> (the token of http.auth "
            "in Patrol's config), or log in at /login")


def credential(scheme: str, value: str) -> str | None:
    """The token in an Authorization header: Bearer, or the password of Basic."""
    if scheme == "bearer" and value:
        return value
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def problem(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error in the API's shape (``{"errors": [...]}``, tab-indented)."""
    body = (json.dumps({"errors": [message]}, indent="\t") + "\n").encode()
    response = Response(body, status, headers=headers, media_type="application/json; charset=utf-8")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="patrol"'
    return response


async def _buffer(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read the request body (None when larger than MAX_PING_BODY) and a ``receive``
    that hands it to the app again."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > MAX_PING_BODY or not message.get("more_body"):
            break
    body = None if size > MAX_PING_BODY else b"".join(m.get("body", b"") for m in messages)

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return body, replay


