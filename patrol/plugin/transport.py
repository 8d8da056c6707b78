"""The transport interface: how requests reach Patrol's API.

Every transport feeds the same transport-neutral :class:`patrol.api.Api`; a transport
only does framing (HTTP, UDP datagrams, ...). ``patrol run`` creates each registered
transport once the supervisor is up and awaits :meth:`Transport.start`; on shutdown it
awaits :meth:`Transport.stop` before stopping the apps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from patrol.api.handler import Api
    from patrol.engine.supervisor import Supervisor


class Transport(ABC):
    """Base class of API transports.

    ``name`` identifies the transport; it is also the value keepalives compare against
    (``KeepAlive.ping_transport``) to accept pings only over their own transport.
    """

    name: ClassVar[str]

    def __init__(self, patrol: "Supervisor", api: "Api") -> None:
        self.patrol = patrol
        self.api = api

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
