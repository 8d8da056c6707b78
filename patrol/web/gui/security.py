"""What keeps the GUI's buttons from being pressed by someone else's page.

* **CSRF.** Every form carries a per-process random token in a hidden field, and the
  same token travels in a ``SameSite=Strict`` cookie (double submit): a cross-site form
  has neither. On top, a POST that the browser marks as cross-site (``Sec-Fetch-Site``)
  or whose ``Origin`` (or ``Referer``) names another host is refused, as the JSON API
  does. A Patrol restart makes old pages' tokens invalid, on purpose.
* **Flash messages** (the result of an action, shown after the redirect) live in a
  signed cookie, so nobody can put words on Patrol's page through a link.
* **Unlocks.** Logs and key/values of an item with a secret need the secret
  (patrol.api.visibility); after it was entered once, an HttpOnly cookie holding an HMAC of
  (item, secret) opens them, so the secret itself never travels in URLs or links (the
  original put it in every log link).
* **Comparisons** of tokens, MACs and cookies go through :func:`patrol.util.compare.same_secret`:
  a cookie or form field holds whatever text the client likes (``hmac.compare_digest``
  raised ``TypeError`` on non-ASCII text: a 500 on every page).
* **Headers.** A strict Content-Security-Policy (no inline script or style, nothing from
  other hosts), no framing (clickjacking), no MIME sniffing of log files.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any, Mapping
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from patrol.util.compare import same_secret

CSRF_COOKIE = "patrol_csrf"
FLASH_COOKIE = "patrol_flash"
UNLOCK_PREFIX = "patrol_unlock_"
MAX_FLASH = 600

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Guard:
    """The per-process keys behind the GUI's tokens and signed cookies."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self.csrf_token = secrets.token_urlsafe(32)

    # -- CSRF ------------------------------------------------------------------------

    def set_csrf_cookie(self, request: Request, response: Response) -> None:
        if not same_secret(request.cookies.get(CSRF_COOKIE, ""), self.csrf_token):
            _cookie(response, CSRF_COOKIE, self.csrf_token)

    def check_post(self, request: Request, form: Mapping[str, str]) -> str | None:
        """None when the POST came from Patrol's own page, else why not."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"the form was sent from another site (the browser says {site[:20]!r})"
        host = request.headers.get("host", "")
        origin = request.headers.get("origin")
        if origin is not None:
            if origin == "null" or urlsplit(origin).netloc != host:
                return "the form was sent from another site (Origin does not match)"
        else:
            referer = request.headers.get("referer")
            if referer is not None and urlsplit(referer).netloc != host:
                return "the form was sent from another site (Referer does not match)"
        field = form.get("csrf", "")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not field or not same_secret(field, self.csrf_token):
            return "the form has expired (Patrol restarted?): reload the page and try again"
        if not same_secret(cookie, self.csrf_token):
            return "the form's cookie is missing: allow cookies for Patrol, reload and try again"
        return None

    # -- flash messages --------------------------------------------------------------

    def set_flash(self, response: Response, ok: bool, text: str) -> None:
        payload = json.dumps({"ok": ok, "text": text[:MAX_FLASH]}, separators=(",", ":")).encode()
        value = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        _cookie(response, FLASH_COOKIE, f"{value}.{self._mac('flash', value)}")

    def read_flash(self, request: Request) -> dict[str, Any] | None:
        """The signed message for this page, if any (see :meth:`clear_flash`)."""
        raw = request.cookies.get(FLASH_COOKIE)
        if raw is None:
            return None
        value, _, mac = raw.rpartition(".")
        if not value or not same_secret(mac, self._mac("flash", value)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
            return {"ok": bool(data["ok"]), "text": str(data["text"])}
        except (ValueError, KeyError, TypeError):
            return None

    def clear_flash(self, request: Request, response: Response) -> None:
        """A message is shown once: the page that showed it deletes it."""
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path="/", samesite="strict", httponly=True)

    # -- log unlocks -----------------------------------------------------------------

    def unlock(self, response: Response, group: str, item_id: str, secret: str) -> None:
        _cookie(response, UNLOCK_PREFIX + f"{group}_{item_id}", self._mac("unlock", group, item_id, secret))

    def unlocked(self, request: Request, group: str, item_id: str, secret: str) -> bool:
        cookie = request.cookies.get(UNLOCK_PREFIX + f"{group}_{item_id}", "")
        return bool(cookie) and same_secret(cookie, self._mac("unlock", group, item_id, secret))

    def _mac(self, purpose: str, *parts: str) -> str:
        message = "\0".join((purpose, *parts)).encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def _cookie(response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, path="/", httponly=True, samesite="strict")


def secure(response: Response) -> Response:
    """Add the GUI's security headers to a response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go back to after an action; anything else goes to ``default``.

    Only ``/path`` is accepted: no scheme, no host, no ``//host`` or ``/\\host`` that a
    browser would read as another site.
    """
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 2000:
        return default
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return default  # browsers drop tabs and newlines: "/\t/host" would become "//host"
    return value


class HeaderApp:
    """An ASGI wrapper adding fixed headers to every response of ``app`` (static files)."""

    def __init__(self, app: Any, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
