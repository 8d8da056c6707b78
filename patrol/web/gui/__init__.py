"""The web GUI, served by the HTTP transport at ``/`` beside the JSON API.

Server-rendered pages (Jinja2, autoescaped) with a small stylesheet and two small
scripts, all served by Patrol itself: no request ever leaves for another host. Pages
work without JavaScript; with it, the dashboard and detail pages update live from the
event stream (``/gui/events``, :mod:`patrol.web.gui.live`), falling back to polling
``/gui/state.json`` while the stream is down (only while a page is open and visible, so
an idle Patrol does nothing for the GUI), and log pages follow their file.

The HTTP transport mounts :func:`routes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from patrol.web.gui.core import STATIC, Gui
from patrol.web.gui.live import Live
from patrol.web.gui.login import Login
from patrol.web.gui.logpages import LogPages
from patrol.web.gui.pages import Pages
from patrol.web.gui.security import HeaderApp

if TYPE_CHECKING:
    from patrol.api.view import KernelView


def routes(view: "KernelView") -> list[BaseRoute]:
    """Every GUI route, for the HTTP transport to mount after its API routes."""
    gui = Gui(view.supervisor, view.api)
    static = HeaderApp(StaticFiles(directory=STATIC), {"X-Content-Type-Options": "nosniff",
                                                        "Cache-Control": "max-age=3600"})
    pages = Pages(gui)
    return [*Login(gui, pages).routes(), *pages.routes(), *LogPages(gui).routes(), *Live(gui, view).routes(),
            Mount("/static", app=static, name="static")]
