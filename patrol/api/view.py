"""What plugins are handed: the view of a running Patrol, and its rendered events.

Transports and ``patrol_trigger`` observers get a :class:`KernelView` (the
:class:`patrol.plugin.transport.PatrolView` of the kernel), never the supervisor: the
API answers for them, events carry what the API would show a caller without the item's
secret. The kernel's own HTTP transport (``patrol.web``) is kernel code and reaches the
API and the engine's read side through :attr:`KernelView.api` and
:attr:`KernelView.supervisor`; a plugin does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from patrol.api.access import Guesses
from patrol.api.handler import Api
from patrol.api.stream import EventStream
from patrol.api.wire import Response
from patrol.plugin.events import Event
from patrol.plugin.model import PatrolConfig
from patrol.util.gotime import format_time

if TYPE_CHECKING:
    from patrol.engine.supervisor import Runner, Supervisor
    from patrol.plugin.loader import Plugins


class KernelView:
    """The :class:`~patrol.plugin.transport.PatrolView` of one running Patrol."""

    def __init__(self, supervisor: "Supervisor", api: Api, stream: EventStream | None = None) -> None:
        self.supervisor = supervisor
        self.api = api
        #: one throttle of guessed secrets and tokens, shared by every transport
        self.guesses = Guesses()
        #: the lifecycle events, for ``GET /events`` and the GUI's live pages
        self.stream = stream if stream is not None else EventStream(supervisor.instance_id)

    @property
    def config(self) -> PatrolConfig:
        return self.supervisor.config

    def handle(self, request: Any, transport: str | None = None, *, history: bool = True) -> Response:
        return self.api.handle(request, transport, history=history)

    async def status(self) -> list[bytes]:
        return await self.api.status_json()

    async def reload(self) -> dict[str, list[str]]:
        return await self.supervisor.reload_config()

    @staticmethod
    def of(patrol: object) -> "KernelView":
        """The kernel's view behind what a transport was handed (kernel transports only)."""
        if not isinstance(patrol, KernelView):
            raise TypeError(f"a kernel transport needs Patrol's own view, not {type(patrol).__name__}")
        return patrol


class EventPublisher:
    """Renders the supervisor's events and hands them to the ``patrol_trigger`` observers
    and to the event stream (:mod:`patrol.api.stream`).

    Snapshots and history records are rendered as the API shows them to a caller
    without the item's secret (:mod:`patrol.api.visibility`): observers forward events.
    An event is rendered once, for both.
    """

    def __init__(self, plugins: "Plugins", api: Api, view: KernelView) -> None:
        self.plugins = plugins
        self.api = api
        self.view = view
        self.stream = view.stream

    def wanted(self) -> bool:
        return True  # the stream keeps every change for clients that reconnect

    def emit(self, name: str, runner: "Runner | None", **extra: Any) -> None:
        observed = self.plugins.has_observers()
        streamed = self.stream.wants(name)
        if not (observed or streamed):
            return  # a periodic event nobody asked for: not even built
        if runner is None:
            event = Event(name, **extra)
        else:
            record = extra.pop("record", None)
            if record is not None:
                record = self.api.render_record(record, runner, proven=False)
            event = Event(name, runner.group, runner.id, self.api.snapshot(runner), record, **extra)
        if observed:
            self.plugins.trigger(self.view, event)
        if streamed:
            self.stream.publish(event, format_time(self.api.patrol.wall(), self.api.patrol.config.json_timestamp))
