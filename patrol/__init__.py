"""Patrol: a process and service supervisor for Linux.

Plugin authors need only :data:`hookimpl` from here, plus the base classes in
:mod:`patrol.keepalive`, :mod:`patrol.service` and :mod:`patrol.transport`.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]


def __getattr__(name: str) -> object:
    # Lazy, so client commands (``patrol status``) start without importing pluggy.
    if name == "hookimpl":
        from .hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'patrol' has no attribute {name!r}")
