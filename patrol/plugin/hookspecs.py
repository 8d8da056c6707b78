"""The hook specifications: Patrol's public plugin contract.

This is the only module that touches pluggy's markers. Plugin authors write::

    from patrol import hookimpl

    @hookimpl
    def patrol_register_keepalives(register):
        register(MyKeepAlive)

There are five hooks. Four *registration* hooks hand the kernel classes that carry a
``name``; the kernel keeps them in registries keyed by that name and chooses an
implementation by looking the name (or a numeric alias of the original Patrol) up. No
hook uses ``firstresult``: which plugin answers never depends on registration order.
The fifth hook, :func:`patrol_trigger`, is an *event* hook: every lifecycle event of
the original Patrol's triggers is one :class:`patrol.Event` delivered through it.

Compatibility promise: arguments are only ever added to these specs, never removed or
renamed, so a plugin written against an older Patrol keeps loading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from patrol.plugin.events import Event
from patrol.plugin.registry import Register

if TYPE_CHECKING:
    from patrol.plugin.keepalive import KeepAlive
    from patrol.plugin.probe import Probe
    from patrol.plugin.service import ServiceBackend
    from patrol.plugin.transport import PatrolView, Transport

PROJECT = "patrol"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def patrol_register_keepalives(register: Register["KeepAlive"]) -> None:
    """Register keepalive methods for apps.

    Call ``register(cls)`` once per method, where ``cls`` subclasses
    :class:`patrol.KeepAlive` and sets ``name`` (the string users write in
    ``"keepalive"``) and optionally ``aliases`` (the original numeric values, such as
    ``1`` for ``pid-patrol``). A name or alias registered twice is an error that names
    both plugins; the second registration is refused and the plugin is listed as
    failed by ``patrol plugins``, and a config using the contested name or alias is an
    error naming both (whichever loaded first: order never decides). The same holds for
    the other registration hooks.

    :param register: a :class:`patrol.Register` bound to the keepalive registry.

    .. versionadded:: 0.1
    """


@hookspec
def patrol_register_services(register: Register["ServiceBackend"]) -> None:
    """Register service management backends.

    Call ``register(cls)`` once per backend, where ``cls`` subclasses
    :class:`patrol.ServiceBackend` and sets ``name`` (the string users write in
    ``"management"`` or ``"management-ACTION"``) and optionally ``aliases``
    (``1`` = ``service``, ``2`` = ``initd`` in the original). A backend turns an action
    (``start``, ``status``, ``stop``, ``restart``) into a command line that Patrol runs
    without blocking supervision.

    :param register: a :class:`patrol.Register` bound to the service registry.

    .. versionadded:: 0.1
    """


@hookspec
def patrol_register_transports(register: Register["Transport"]) -> None:
    """Register API transports (HTTP, UDP, or your own).

    Call ``register(cls)`` with a subclass of :class:`patrol.Transport`. Every
    registered transport is created with the running Patrol's :class:`patrol.PatrolView`
    and started by ``patrol run`` once the supervisor is up, and stopped while it shuts
    down; a transport decides from the config whether it has anything to listen on (and
    may then do nothing). All transports call the same :meth:`patrol.PatrolView.handle`,
    so they differ only in framing.

    :param register: a :class:`patrol.Register` bound to the transport registry.

    .. versionadded:: 0.1
    """


@hookspec
def patrol_register_probes(register: Register["Probe"]) -> None:
    """Register probes: checks of an item's readiness and liveness.

    Call ``register(cls)`` once per probe, where ``cls`` subclasses
    :class:`patrol.Probe` and sets ``name`` (the key users write inside ``"readiness"``
    or ``"liveness"``, e.g. ``{"readiness": {"tcp": 8080, "period": 1}}``) and
    optionally ``aliases``, ``options`` (the keys of the probe's settings, checked by
    the config loader) and ``shorthand``. Patrol creates one probe per run of an item
    and calls its ``check()`` on the event loop, bounded by the probe's ``timeout``.
    The first-party probes ``tcp``, ``http``, ``exec`` and ``log`` are the
    ``patrol-probes`` distribution.

    :param register: a :class:`patrol.Register` bound to the probe registry.

    .. versionadded:: 0.2 (plugin API 2.1)
    """


@hookspec
def patrol_trigger(patrol: "PatrolView", event: Event) -> None:
    """Observe a lifecycle event (the original Patrol's triggers).

    Called for every :class:`patrol.Event`: Patrol started, tick, stopped and
    shutdown; app and service start, started, start failed, pinged, running, disabled,
    closed (with the history record) and shutdown; (plugin API 2.1) ready, unready,
    waiting (``event.reason`` says for what) and liveness failed. ``event.name`` is a dotted string
    such as ``"app.closed"``; ``event.snapshot`` is the item's state at that moment as
    the API would report it to a caller without the item's secret (secrets are never
    included, nor the key/values of an item that has one: observers forward events).

    Observers run on Patrol's event loop: return quickly, and hand slow work to a
    thread or a task. An implementation that raises is logged and skipped; the other
    implementations and the supervisor carry on. The return value is ignored.

    :param patrol: the running Patrol as a :class:`patrol.PatrolView` (its config, the
        API, a reload); no longer the supervisor itself (plugin API 2.0).
    :param event: the event.

    .. versionadded:: 0.1
    """
