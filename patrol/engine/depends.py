"""Start order and stop order: ``depends-on`` at run time.

An item is started only while every condition it depends on holds; until then it is in
state ``waiting`` with the reason (``waiting for db: ready``). Conditions are looked at
again whenever a dependency changes (a run begins or ends, readiness changes, a toggle),
so a dependent starts on the same loop turn its dependency becomes what it waits for.
Independent items start in parallel, as they always did. Every start waits, restarts
too: a dependent that crashes while its database is down waits for it instead of
crashing again. A dependency that is disabled or gave up leaves its dependents waiting,
and their reason says so. Running dependents are never stopped because a dependency
went away: the conditions gate starts only.

At shutdown, each item is stopped once every item that depends on it has stopped
(reverse order; independent items in parallel). The config refuses cycles
(:mod:`patrol.config.depends`), so the order always exists.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Awaitable, Callable, Iterable, Protocol

from patrol.plugin.keepalive import ExitStatus
from patrol.plugin.model import AppConfig, PatrolConfig, ServiceConfig
from patrol.plugin.states import ItemState


class Dependency(Protocol):
    """An app's or a service's runner, as its dependents see it."""

    group: str
    id: str

    @property
    def config(self) -> AppConfig | ServiceConfig: ...

    @property
    def phase(self) -> ItemState: ...

    @property
    def running(self) -> bool:
        """A run is on (whether ready or not)."""

    @property
    def ready(self) -> bool: ...

    @property
    def completion(self) -> ExitStatus | None:
        """How its last run ended while this Patrol ran (None: none ended yet)."""

    def wake(self) -> None:
        """Look at its own conditions again, soon."""


class Named(Protocol):
    group: str
    id: str


class AppStop(Protocol):
    """An app's runner as the shutdown sees it."""

    id: str

    async def stop(self, reason: str = ...) -> None: ...


class ServiceStop(Protocol):
    """A service's runner as the shutdown sees it."""

    id: str

    async def shutdown(self) -> None: ...


def key(group: str, item_id: str) -> str:
    return f"{group}/{item_id}"


def unmet(condition: str, item: Dependency) -> str | None:
    """Why ``condition`` does not hold for ``item`` (a few words), or None when it does."""
    if condition == "started" and item.running:
        return None
    if condition == "ready" and item.ready:
        return None
    done = item.completion
    if condition == "completed" and done is not None:
        return None
    if condition == "completed-successfully" and done is not None and done.code == 0:
        return None
    if condition.startswith("completed") and done is not None:
        known = done.code is not None or done.signal is not None
        return f"its last run ended with {done}" if known else "its last run ended, how is unknown"
    phase = item.phase
    if phase in (ItemState.DISABLED, ItemState.GIVEN_UP, ItemState.WAITING, ItemState.BACKOFF):
        return f"it is {phase.label}"  # it will not get there by itself soon
    return ""


def start_order(items: Iterable[Any]) -> list[Any]:
    """``items`` (runners), every dependency before its dependents: at Patrol's start a
    dependent then finds its dependencies already on their way. Stable otherwise."""
    by_key = {key(i.group, i.id): i for i in items}
    done: set[str] = set()
    entered: set[str] = set()  # (the config has no cycle; this keeps a walk finite anyway)
    order: list[Any] = []
    for name in by_key:
        stack = [(name, False)]
        while stack:  # iterative depth-first: a long chain must not hit the recursion limit
            node, expanded = stack.pop()
            if node in done or node not in by_key or (node in entered and not expanded):
                continue
            if expanded:
                done.add(node)
                order.append(by_key[node])
                continue
            entered.add(node)
            stack.append((node, True))
            stack += [(d, False) for d in sorted(by_key[node].config.depends_on, reverse=True) if d not in done]
    return order


class Dependencies:
    """Who depends on whom, for the runners of one config (``find(group, id)``)."""

    def __init__(self, find: Callable[[str, str], Any], config: PatrolConfig,
                 members: Callable[[str], Iterable[Any]] = lambda set_id: ()) -> None:
        self.find = find
        #: the copies of the set of instances with this id (an app's config names the set,
        #: the runners are its copies ``ID-0`` ..)
        self.members = members
        #: "group/id" -> the "group/id" of the items that depend on it
        self.dependents: dict[str, set[str]] = {}
        self.rebuild(config)

    def rebuild(self, config: PatrolConfig) -> None:
        dependents: dict[str, set[str]] = {}
        items: list[AppConfig | ServiceConfig] = [*config.apps.values(), *config.services.values()]
        for item in items:
            me = key("app" if isinstance(item, AppConfig) else "service", item.id)
            for dependency in item.depends_on:
                dependents.setdefault(dependency, set()).add(me)
        self.dependents = dependents

    def reloaded(self, config: PatrolConfig, runners: Iterable[Dependency]) -> None:
        """A reload applied ``config``: conditions may have been added, changed or removed,
        so every item looks again (an unchanged running item is not touched)."""
        self.rebuild(config)
        for runner in runners:
            runner.wake()

    def waiting_for(self, config: AppConfig | ServiceConfig) -> str | None:
        """What an item waits for before it may start (``waiting for db: ready (...)``),
        or None when every condition holds."""
        for dependency, condition in sorted(config.depends_on.items()):
            group, _, item_id = dependency.partition("/")
            item = self.find(group, item_id)
            if item is None:  # a reload removed it: nothing to wait for any more
                continue
            why = unmet(condition, item)
            if why is not None:
                return f"waiting for {item_id}: {condition}" + (f" ({why})" if why else "")
        return None

    def changed(self, item: Named) -> None:
        """An item changed in a way its dependents may wait for (a run began or ended,
        readiness, a toggle): they look again."""
        for dependent in sorted(self.dependents.get(key(item.group, item.id), ())):
            for waiting in self._runners(dependent):
                waiting.wake()

    def _runners(self, dependent: str) -> list[Any]:
        """The runners a ``"group/id"`` of the config stands for: the item's, or each copy's
        of a set of instances (the config names the set; no runner has its id)."""
        g, _, i = dependent.partition("/")
        runner = self.find(g, i)
        if runner is not None:
            return [runner]
        return list(self.members(i)) if g == "app" else []

    def stop_in_order(self, apps: Iterable[AppStop], services: Iterable[ServiceStop]
                      ) -> dict[str, Awaitable[None]]:
        """Patrol's shutdown: ``"app ID"`` / ``"service ID"`` -> the item's stop, each begun
        once the items that depend on it have stopped (dependents first, independent ones
        in parallel; the config has no cycle, so every stop begins)."""
        stops: dict[str, Callable[[], Awaitable[None]]] = {key("app", a.id): partial(a.stop, "shutdown") for a in apps}
        stops.update({key("service", s.id): s.shutdown for s in services})
        done = {name: asyncio.get_running_loop().create_future() for name in stops}

        async def stop(name: str) -> None:
            try:
                dependents = {key(r.group, r.id) for d in self.dependents.get(name, ()) for r in self._runners(d)}
                waits = [done[d] for d in dependents if d in done and d != name]
                if waits:
                    await asyncio.gather(*waits, return_exceptions=True)
                await stops[name]()
            finally:
                if not done[name].done():
                    done[name].set_result(None)

        return {name.replace("/", " "): stop(name) for name in stops}
