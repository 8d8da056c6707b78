"""Patrol: a process and service supervisor for Linux.

Plugin authors need only :data:`hookimpl` from here, plus the base classes in
:mod:`patrol.keepalive`, :mod:`patrol.service` and :mod:`patrol.transport`.
"""

from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
