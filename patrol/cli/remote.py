"""Requests to a running Patrol over its HTTP API (standard library only: urllib).

Every failure becomes a :class:`ClientError` with the exit code the command ends with.
Requests that carry a secret are POSTed, so the secret never appears in a URL (and so in
no proxy or access log).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from patrol.cli.address import EXIT_REFUSED, EXIT_UNREACHABLE, ClientError


class Client:
    """Requests to one Patrol; every failure becomes a :class:`ClientError`."""

    def __init__(self, base: str, timeout: float = 10.0, token: str | None = None) -> None:
        self.base = base
        self.timeout = timeout
        self.token = token

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status/", None)[1]

    def api(self, request: dict[str, Any]) -> dict[str, Any]:
        """POST a request; a refusal (HTTP 4xx with ``errors``) raises ClientError(1)."""
        code, body = self._call("POST", "/api/", request)
        if body.get("errors"):
            what = f"{request.get('group', '')} {request.get('id', '')}".strip()
            raise ClientError(f"{what}: " + "; ".join(map(str, body["errors"])), EXIT_REFUSED)
        return body

    def item(self, group: str, item_id: str, secret: str = "") -> dict[str, Any]:
        """One item as the API answers a request about it (history, details)."""
        request: dict[str, Any] = {"id": item_id, "group": group}
        if secret:
            request["secret"] = secret
        return self.api(request)

    def logs(self, request: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/logs`` (patrol.api.loglines); a refusal raises ClientError(1)."""
        code, body = self._call("POST", "/api/logs", request)
        if body.get("errors"):
            raise ClientError(f"{request.get('id', '')}: " + "; ".join(map(str, body["errors"])), EXIT_REFUSED)
        return body

    def reload(self) -> dict[str, Any]:
        code, body = self._call("POST", "/-/reload", {})
        if body.get("errors"):
            raise ClientError("reload refused:\n" + "\n".join(map(str, body["errors"])), EXIT_REFUSED)
        return body

    def _call(self, method: str, path: str, payload: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        url = self.base + path
        data = json.dumps(payload).encode() if payload is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                code, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            code, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach Patrol at {self.base}: {reason}", EXIT_UNREACHABLE) from None
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ClientError(f"unexpected answer from {url} (HTTP {code}): is this Patrol's API?", EXIT_UNREACHABLE)
        if code == 401:
            hint = ("the token was refused" if self.token else
                    "this Patrol needs its token: pass --token-file FILE or set $PATROL_TOKEN")
            raise ClientError(f"{hint} ({'; '.join(map(str, body.get('errors') or []))})", EXIT_REFUSED)
        if code == 429:
            raise ClientError("; ".join(map(str, body.get("errors") or ["Too Many Requests"])), EXIT_REFUSED)
        return code, body
