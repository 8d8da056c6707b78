"""Routes built on first use: the GUI's code is imported when a page is first asked for.

The GUI (its pages, Jinja2 and its templates, static files) is megabytes of memory and
tens of milliseconds of start-up that a Patrol whose HTTP port serves only the API and
``/status/`` never uses. :class:`LazyRoutes` stands in the router for those routes and
builds them the first time a request gets past the routes before it (the API's routes
come first, so an API request never builds them). Once built, it answers exactly as the
routes themselves would in its place: the first full match wins, else the first partial
one (a method the route does not take), else none.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

_CHOSEN = "patrol.lazy_route"  # the scope key that carries the matched route to handle()


class LazyRoutes(BaseRoute):
    """The routes ``build()`` returns, built on the first request that reaches them."""

    def __init__(self, build: Callable[[], Sequence[BaseRoute]]) -> None:
        self._build: Callable[[], Sequence[BaseRoute]] | None = build
        self._routes: Sequence[BaseRoute] = ()

    @property
    def routes(self) -> Sequence[BaseRoute]:
        if self._build is not None:
            self._routes, self._build = list(self._build()), None
        return self._routes

    @property
    def built(self) -> bool:
        return self._build is None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[Match, Scope] | None = None
        for route in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return match, {**child, _CHOSEN: route}
            if match is Match.PARTIAL and partial is None:
                partial = (match, {**child, _CHOSEN: route})
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: BaseRoute = scope.pop(_CHOSEN)
        scope["route"] = route
        await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)
