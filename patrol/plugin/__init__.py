"""The plugin contract: everything a plugin subclasses, receives or registers.

Owns the hook specifications, the loader that isolates broken plugins, the registries
of named methods, the base classes (``KeepAlive``, ``PingKeepAlive``,
``ServiceBackend``, ``Transport``), what they are handed (``AppControl``,
``PatrolView``, the frozen configuration model with ``Option``), lifecycle events and
the item states. It is the bottom layer of the kernel: it imports only the standard
library, pluggy, packaging, structlog and :mod:`patrol.util`, never the engine, the
API, the web stack or the command line. Plugin authors do not import it directly:
``from patrol import ...`` is the one surface (see ``patrol/__init__.py``).

Nothing is imported here, so importing one module of the contract (the client CLI
reads the item states) never loads pluggy.
"""
