"""Routes built on first use: code that only some requests need is imported by the first of them.

The GUI (its pages, Jinja2 and its templates, static files) is megabytes of memory and
tens of milliseconds of start-up that a Patrol whose HTTP port serves only the API and
``/status/`` never uses; the log browser's reader (``/api/logs``) is a few hundred kB that
most Patrols never need either. :class:`LazyRoutes` stands in the router for such routes
and builds them the first time a request gets past the routes before it (the API's routes
come first, so an API request never builds the GUI's). Once built, it answers exactly as
the routes themselves would in its place: the first full match wins, else the first
partial one (a method the route does not take), else none.

A build that fails (a module missing or broken in the installation) must not take the
server down nor turn into a bare traceback: the requests those routes would have served
are answered 500 with what could not be loaded, the cause goes to Patrol's log, and the
next such request tries again (the failure may have been passing, e.g. no descriptor left).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import structlog
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from patrol.api.wire import dumps

_CHOSEN = "patrol.lazy_route"  # the scope key that carries the matched route to handle()
_FAILED = "patrol.lazy_failed"  # the scope key that marks a request answered with the build's failure

log = structlog.get_logger("patrol.http")


class LazyRoutes(BaseRoute):
    """The routes ``build()`` returns, built on the first request that reaches them.

    ``what`` names them in the answer and the log when the build fails; ``paths``, when
    given, are the only paths they serve (so a failed build answers those alone), else
    every request that reaches them is theirs.
    """

    def __init__(self, build: Callable[[], Sequence[BaseRoute]], what: str = "these pages",
                 paths: Sequence[str] = ()) -> None:
        self._build: Callable[[], Sequence[BaseRoute]] | None = build
        self._routes: Sequence[BaseRoute] = ()
        self.what = what
        self.paths = tuple(paths)
        self.failure = ""  # why the last build failed ("" once built, or before trying)

    @property
    def routes(self) -> Sequence[BaseRoute]:
        if self._build is not None:
            try:
                built = list(self._build())
            except Exception as exc:  # an import or a constructor: answered, logged, retried
                self.failure = f"{type(exc).__name__}: {exc}"
                log.error("routes could not be loaded", routes=self.what, error=self.failure)
                return ()
            self._routes, self._build, self.failure = built, None, ""
        return self._routes

    @property
    def built(self) -> bool:
        return self._build is None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self.paths and scope.get("path") not in self.paths:
            return Match.NONE, {}
        routes = self.routes
        if not self.built:  # the build failed: every request for these routes hears why
            return (Match.FULL, {_FAILED: True}) if scope["type"] == "http" else (Match.NONE, {})
        partial: tuple[Match, Scope] | None = None
        for route in routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return match, {**child, _CHOSEN: route}
            if match is Match.PARTIAL and partial is None:
                partial = (match, {**child, _CHOSEN: route})
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.pop(_FAILED, False):
            await self._unavailable(send)
            return
        route: BaseRoute = scope.pop(_CHOSEN)
        scope["route"] = route
        await route.handle(scope, receive, send)

    async def _unavailable(self, send: Send) -> None:
        # the API's error shape; the cause (module names, paths) stays in the log
        body = dumps({"errors": [f"Internal Error: {self.what} could not be loaded: see Patrol's log"]})
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)
