"""The login page: how a browser presents ``http.auth``'s token (see patrol/web/auth.py).

A correct token sets the session cookie (HttpOnly, SameSite=Strict; the token itself
is never stored in the browser) and goes back to the page that asked for it. The form
has the GUI's CSRF protection, wrong tokens count towards the client's throttle, and
nothing about this Patrol (uptime, instance, apps) is shown before the login.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from patrol.web import auth
from patrol.api.access import TOKEN, too_many
from patrol.web.gui.security import safe_next, secure

if TYPE_CHECKING:
    from patrol.web.gui.core import Gui
    from patrol.web.gui.pages import Pages

#: what the page frame shows of Patrol to someone not logged in: nothing
ANONYMOUS = {"instance": "", "uptime": "", "shutdown": False}


class Login:
    def __init__(self, gui: "Gui", pages: "Pages") -> None:
        self.gui = gui
        self.pages = pages  # its form reader does the CSRF checks

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/login", self.page, methods=["GET", "HEAD"]),
            Route("/login", self.submit, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
        ]

    async def page(self, request: Request) -> Response:
        back = safe_next(request.query_params.get("next"))
        access = auth.access_of(request)
        if access is None or access.auth is None or access.session_ok(request.cookies.get(auth.SESSION_COOKIE, "")):
            return secure(RedirectResponse(back, 303))  # nothing to log in to, or logged in already
        return self._page(request, back)

    async def submit(self, request: Request) -> Response:
        form = await self.pages._form(request)
        if isinstance(form, Response):
            return form
        back = safe_next(form.get("next"))
        access = auth.access_of(request)
        if access is None or access.auth is None:
            return secure(RedirectResponse(back, 303))
        token = form.get("token", "")
        if not token:
            return self._page(request, back, "token: enter the token.", 400)
        client = auth.client_of(request.scope)
        wait = access.retry_after(client, TOKEN)
        if wait:
            return self._page(request, back, too_many(wait), 429)
        if not access.token_ok(token):
            access.failed(client, TOKEN)
            return self._page(request, back, "The token is wrong.", 401)
        response = RedirectResponse(back, 303)
        response.set_cookie(auth.SESSION_COOKIE, access.new_session(), max_age=auth.SESSION_SECONDS, path="/",
                            httponly=True, samesite="strict")
        return secure(response)

    async def logout(self, request: Request) -> Response:
        """Forget the session in this browser (a copied cookie stays valid until it expires
        or the token changes: sessions are not stored, so there is nothing to revoke)."""
        form = await self.pages._form(request)
        if isinstance(form, Response):
            return form
        response = RedirectResponse("/login", 303)
        response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return secure(response)

    def _page(self, request: Request, back: str, problem: str = "", status: int = 200) -> Response:
        return self.gui.render(request, "login.html", {"next": back, "problem": problem, "patrol": ANONYMOUS},
                               status)
