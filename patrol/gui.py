"""The web GUI (served by the HTTP transport at ``/``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from .api import Api
    from .supervisor import Supervisor


def routes(patrol: "Supervisor", api: "Api") -> list[BaseRoute]:
    return []
