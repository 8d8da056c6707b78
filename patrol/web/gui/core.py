"""What every GUI page shares: templates, the guard, lookups and the page frame."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import json

import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.templating import Jinja2Templates

from patrol import __version__
from patrol.web import auth
from patrol.util.compare import same_secret
from patrol.api import access
from patrol.api import visibility
from patrol.util.steps import each
from patrol.web.gui import fmt
from patrol.web.gui.security import Guard, secure

if TYPE_CHECKING:
    from patrol.api.handler import Api
    from patrol.engine.readside import AppView, ItemView, Reader

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates"
STATIC = PACKAGE / "static"
#: where a page's pre-rendered part goes (a string no template or value can contain)
SLOT = "\x00patrol-slot\x00"


def template_env() -> jinja2.Environment:
    """Autoescaping on for every template, whatever its name; undefined names fail loudly."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(duration=fmt.duration, local_time=fmt.local_time, iso_time=fmt.iso_time, size=fmt.size)
    env.globals["version"] = __version__
    return env


def utf8(text: str) -> bytes:
    """``text`` as UTF-8, whatever it holds.

    Stored data (a key/value from an older state file, a name in a config, an app's
    log) may hold lone UTF-16 surrogates, which have no UTF-8 encoding: encoding the
    page would raise, and every visitor would get a 500. They become U+FFFD instead.
    The usual case costs one encode.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


class JSON(JSONResponse):
    """A JSON answer of the GUI's own routes that stored data cannot break (see utf8)."""

    def render(self, content: Any) -> bytes:
        return self.encode(content)

    @staticmethod
    def encode(content: Any) -> bytes:
        return utf8(json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")))


class Gui:
    """Shared state of the GUI of one Patrol: created once by :func:`patrol.web.gui.routes`."""

    def __init__(self, patrol: "Reader", api: "Api") -> None:
        self.patrol = patrol
        self.api = api
        self.guard = Guard()
        self.stats = patrol.cpu  # the one sampler: the same figures as /status/
        self.templates = Jinja2Templates(env=template_env())

    def find(self, group: str, item_id: str) -> "ItemView | None":
        """Ids are lower-case in Patrol; a URL typed with capitals still finds the item."""
        if group not in ("app", "service"):
            return None
        return self.patrol.find(group, item_id.lower())

    def find_app(self, item_id: str) -> "AppView | None":
        return self.patrol.apps.get(item_id.lower())

    def secret_matches(self, runner: "ItemView", given: str, request: Request | None = None) -> bool:
        """With ``request``, the attempt counts towards its client's throttle, and a
        blocked client's attempts are refused unchecked."""
        secret = runner.config.secret
        if not secret or not given:
            return False
        credential = access.item_credential(runner.group, runner.id)
        if request is not None and auth.retry_after(request, credential):
            return False
        if same_secret(given, secret):
            return True
        if request is not None:
            auth.record_failure(request, credential)
        return False

    def proven(self, request: Request, runner: "ItemView") -> bool:
        """Did this request show the item's secret: in ``?secret=`` (as the original's
        links) or through the unlock cookie a correct secret sets?"""
        if not runner.config.secret:
            return False
        if self.secret_matches(runner, request.query_params.get("secret", ""), request):
            return True
        return self.guard.unlocked(request, runner.group, runner.id, runner.config.secret)

    def sees_private(self, request: Request, runner: "ItemView") -> bool:
        """May this request see the item's key/values and logs (patrol.api.visibility)?
        Ask once per request: a wrong ``?secret=`` counts as one guess each time."""
        return visibility.sees_private(runner, proven=self.proven(request, runner))

    def patrol_info(self) -> dict[str, Any]:
        started = self.patrol.started
        return {
            "instance": self.patrol.instance_id,
            "uptime": fmt.duration(self.patrol.wall() - started) if started is not None else "",
            "shutdown": self.patrol.shutting_down,
            # the state file refuses writes: every page shows it in a banner
            "state_file_error": self.patrol.store_error or "",
            "state_file_since": fmt.local_time(self.patrol.store_error_since) if self.patrol.store_error else "",
        }

    def render(self, request: Request, name: str, context: dict[str, Any], status: int = 200,
               *, slot: Sequence[bytes] = ()) -> Response:
        """A page in the common frame, with the CSRF token, the action result (once)
        and the security headers. Nothing a page shows can make it fail to encode.

        ``slot``: parts rendered beforehand (in steps, patrol.util.steps) that go where the
        template says ``{{ slot }}``.
        """
        html = self.templates.get_template(name).render({
            "slot": Markup(SLOT),
            "request": request,
            "csrf": self.guard.csrf_token,
            "patrol": self.patrol_info(),
            "flash": self.guard.read_flash(request),
            "signed_in": request.scope.get(auth.HOW_KEY) == "session",  # shows the logout button
            **context,
        })
        if slot:  # megabytes: sent a chunk at a time, never joined (see patrol.util.steps)
            head, _, tail = html.partition(SLOT)
            parts = [utf8(head), *slot, utf8(tail)]
            response: Response = StreamingResponse(
                each(parts), status, media_type="text/html; charset=utf-8",
                headers={"Content-Length": str(sum(map(len, parts)))})
        else:
            response = HTMLResponse(utf8(html.replace(SLOT, "")), status)
        self.guard.clear_flash(request, response)
        self.guard.set_csrf_cookie(request, response)
        return secure(response)

    def error(self, request: Request, status: int, title: str, *messages: str) -> Response:
        return self.render(request, "error.html", {"title": title, "messages": list(messages)}, status)
