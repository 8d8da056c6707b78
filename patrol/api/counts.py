"""How many API requests were answered, by transport and status (``patrol_api_requests_total``).

Counted where every transport meets, :meth:`patrol.api.handler.Api.handle`, plus the
refusals a transport answers itself before a request reaches it (HTTP: a body too
large, a missing token, a throttled guess). Both labels are bounded: transports are
the registered ones, statuses the few the API answers with.
"""

from __future__ import annotations


class RequestCounts:
    """(transport, HTTP status) -> requests answered since Patrol started."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}

    def count(self, transport: str | None, status: int) -> None:
        """One more answer; a library call (no transport) counts as ``library``."""
        key = (transport or "library", status)
        self.counts[key] = self.counts.get(key, 0) + 1
