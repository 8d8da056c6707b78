"""The transport interface: how requests reach Patrol's API, and what a plugin may see.

Every transport feeds the same transport-neutral API through :meth:`PatrolView.handle`;
a transport only does framing (HTTP, UDP datagrams, ...). ``patrol run`` creates each
registered transport once the supervisor is up and awaits :meth:`Transport.start`; on
shutdown it awaits :meth:`Transport.stop` while the apps stop.

Transports and ``patrol_trigger`` observers are handed a :class:`PatrolView`, not the
supervisor: the few things a plugin may see and do, which stay the same however the
kernel is built inside.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

from patrol.plugin.model import PatrolConfig


class Answer(Protocol):
    """What :meth:`PatrolView.handle` returns: an HTTP-like status and the JSON body.

    The body is the item's state *before* the request, as the original answered, or
    ``{"errors": [...]}`` with a status of 400 or more.
    """

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        """``status < 400``."""


class Guesses(Protocol):
    """Patrol's one throttle of guessed secrets and tokens, shared by every transport.

    ``address`` is the peer's address (Patrol turns it into a client: all of loopback is
    one, an IPv6 /64 is one); ``credential`` names what was guessed (``"token"``, or
    ``"app/<id>"`` for an item's secret, see :func:`patrol.secret_credential`).
    """

    def retry_after(self, address: str, credential: str, transport: str = "http") -> float:
        """Seconds before this client may try ``credential`` again; 0 when it may now."""

    def failed(self, address: str, credential: str, transport: str = "http") -> None:
        """Count a wrong guess (too many within a minute block the client a while)."""


class PatrolView(Protocol):
    """What a transport or a trigger observer may see and do of the running Patrol."""

    @property
    def config(self) -> PatrolConfig:
        """The running configuration (a reload replaces it: read it when needed)."""

    @property
    def guesses(self) -> Guesses:
        """The throttle every transport counts wrong secrets and tokens in."""

    def handle(self, request: Any, transport: str | None = None, *, history: bool = True) -> Answer:
        """Apply one decoded API request that arrived over ``transport`` (its ``name``).

        Pings are accepted only over the transport their keepalive names. ``history``
        False leaves the history out of the answer (cheaper; UDP never sends it).
        """

    async def status(self) -> list[bytes]:
        """The ``/status/`` document (every item), as the original's JSON, in chunks."""

    async def reload(self) -> dict[str, list[str]]:
        """Re-read the config file and apply what changed (as SIGHUP): ``added``,
        ``removed``, ``changed``, ``unchanged``, or ``errors`` (nothing changed)."""


class Transport(ABC):
    """Base class of API transports.

    ``name`` identifies the transport; it is also the value keepalives compare against
    (``KeepAlive.ping_transport``) to accept pings only over their own transport.
    ``self.patrol`` is the :class:`PatrolView`. ``self.api`` is the same view, for
    transports written when the constructor took ``(patrol, api)``: Patrol still passes
    both, so either constructor works.
    """

    name: ClassVar[str]

    def __init__(self, patrol: PatrolView, api: PatrolView | None = None) -> None:
        self.patrol = patrol
        self.api = api if api is not None else patrol

    @abstractmethod
    async def start(self) -> None:
        """Bind and begin serving. Raise ``OSError`` if the address cannot be bound."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop serving and release the socket. Must be safe to call twice."""

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound (host, port), once started; None before."""
        return None
