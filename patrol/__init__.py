"""Patrol: a process and service supervisor for Linux.

Plugin authors need only :data:`hookimpl` from here, plus the base classes in
:mod:`patrol.keepalive`, :mod:`patrol.service` and :mod:`patrol.transport`.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hookspecs import hookimpl

__version__ = "0.2.0"

#: The plugin API this kernel offers, as (major, minor). The major number changes when a
#: hook, a base class or a documented attribute changes incompatibly; the minor number
#: when something is only added (a new hook, a new optional method). A plugin declares
#: the kernel versions it was written for in its ``patrol`` dependency (the loader refuses
#: it when that range does not hold this kernel); a plugin that spans several kernels can
#: test ``patrol.PLUGIN_API >= (1, 1)`` before using an addition.
PLUGIN_API = (1, 0)

__all__ = ["PLUGIN_API", "hookimpl", "__version__"]


def __getattr__(name: str) -> object:
    # Lazy, so client commands (``patrol status``) start without importing pluggy.
    if name == "hookimpl":
        from .hookspecs import hookimpl

        return hookimpl
    raise AttributeError(f"module 'patrol' has no attribute {name!r}")
