"""The one comparison of secrets, tokens and MACs in Patrol.

Every credential a client sends (an item's ``secret``, the ``http.auth`` token, the
session cookie's MAC, the GUI's CSRF token, a log-unlock cookie) is compared here, so
that no caller can get it wrong: ``hmac.compare_digest`` raises ``TypeError`` on a
``str`` with non-ASCII characters (a cookie or form value is any text the client
likes), and ``str.encode()`` raises on a lone UTF-16 surrogate (JSON can carry one as
``"\\ud800"``). Both became 500s; here any ``str`` or ``bytes`` compares, unequal to
anything it does not equal.
"""

from __future__ import annotations

import hashlib
import hmac


def same_secret(given: str | bytes, expected: str | bytes) -> bool:
    """Constant time, and independent of both lengths: SHA-256 digests are compared."""
    return hmac.compare_digest(_digest(given), _digest(expected))


def _digest(value: str | bytes) -> bytes:
    if isinstance(value, str):
        # surrogatepass: a lone surrogate encodes (to bytes no valid text encodes to)
        value = value.encode("utf-8", "surrogatepass")
    return hashlib.sha256(value).digest()
