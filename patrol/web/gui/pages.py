"""The dashboard, the detail pages, and the actions (toggles) behind their buttons.

Actions go through :meth:`patrol.api.handler.Api.handle`, exactly like an API toggle (same
secret rules, same state changes, same events), so the GUI can never do something the
API would refuse. Forms work without JavaScript: a confirmation for disable and
restart is a server-rendered page then, and a dialog when scripts run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from patrol.web import auth
from patrol.api import access
from patrol.engine.item_state import DISABLE, ENABLE, RESTART, RUNONCE_DISABLE, RUNONCE_ENABLE
from patrol.api.visibility import visible_keyvalue
from patrol.web.gui import settings
from patrol.web.gui import viewmodels as views
from patrol.util.steps import Steps
from patrol.web.gui.core import JSON, utf8
from patrol.engine.logread import STREAMS, LogDir, Run
from patrol.web.gui.previous import previous_stderr
from patrol.web.gui.security import safe_next, secure

if TYPE_CHECKING:
    from patrol.engine.item_state import HistoryRecord
    from patrol.engine.readside import AppView, ItemView
    from patrol.web.gui.core import Gui

MAX_FORM = 16 * 1024
#: units of work per step of the dashboard and its live state (patrol.util.steps): an item
#: costs ~5 us (views.ITEM_UNITS = 1), a table row ~70 us (ROW_UNITS), a live entry ~8 us
DASHBOARD_STEP = 250
ROW_UNITS = 10
LIVE_UNITS = 2
#: rows rendered by one template call
ROW_CHUNK = DASHBOARD_STEP // ROW_UNITS
#: how many recent log runs a detail page lists (and matches history records against)
RECENT_RUNS = 10
MATCH_RUNS = 100
#: a history record is matched to the newest run started at most this long before it
#: (a pid-app or ping app may take a while to report itself running)
MATCH_WINDOW = 600.0


@dataclass(frozen=True)
class Action:
    toggle: int
    verb: str  # as on the button
    doing: str  # for "Could not ... app "web" (web)"
    done: str  # the result; "{what}" is e.g. 'app "web" (web)'
    confirm: bool = False


ACTIONS = {
    "enable": Action(ENABLE, "Enable", "enable", "Enabled {what}."),
    "disable": Action(DISABLE, "Disable", "disable", "Disabled {what}: it is being stopped.", confirm=True),
    "restart": Action(RESTART, "Restart", "restart", "Restart of {what} requested.", confirm=True),
    "runonce-on": Action(RUNONCE_ENABLE, "Run once", "turn run once on for",
                         "Run once is on for {what}: it is disabled after its current or next run."),
    "runonce-off": Action(RUNONCE_DISABLE, "Run once off", "turn run once off for", "Run once is off for {what}."),
}
COLUMNS = (("name", "Name"), ("type", "Type"), ("state", "State"), ("pid", "PID"), ("uptime", "Uptime"),
           ("restarts", "Restarts"), ("cpu", "CPU"), ("memory", "Memory"))


def describe(runner: "ItemView") -> str:
    return f'{runner.group} "{runner.config.name}" ({runner.id})'


def log_url(item_id: str, relative: str) -> str:
    return f"/app/{item_id}/logs/{quote(relative, safe='/')}"


class Pages:
    def __init__(self, gui: "Gui") -> None:
        self.gui = gui

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.dashboard, methods=["GET", "HEAD"]),
            Route("/", self.action, methods=["POST"]),
            Route("/unlock", self.unlock, methods=["POST"]),
            Route("/gui/state.json", self.state_json, methods=["GET", "HEAD"]),
            Route("/app/{id}", self.detail, methods=["GET", "HEAD"]),
            Route("/service/{id}", self.detail, methods=["GET", "HEAD"]),
        ]

    # -- pages -----------------------------------------------------------------------

    async def dashboard(self, request: Request) -> Response:
        """Every item, one table row each, built in steps (patrol.util.steps): the rows of
        10,000 apps are about a second of work."""
        view, problems = views.parse_view(dict(request.query_params))
        async with self.gui.api.big_answers:
            html, rows, shown = await self._rows(view, auth.here(request))
        return self.gui.render(request, "dashboard.html", {
            "rows": rows,
            "shown": shown,
            "view": view,
            "problems": problems,
            "columns": COLUMNS,
            "states": views.STATE_LABELS,
            "state_counts": views.state_counts,
            "next": auth.here(request),
            "live": True,
        }, 400 if problems else 200, slot=html)

    async def _rows(self, view: views.View, here: str) -> tuple[list[bytes], list[views.Item], set[str]]:
        """The dashboard's rows as HTML, in the view's order, and the keys it shows."""
        steps = Steps(DASHBOARD_STEP)
        rows = await views.items_in_steps(self.gui.patrol, self.gui.stats, steps)
        ordered = sorted(rows, key=views.SORTS[view.sort], reverse=view.descending)  # ~7 ms for 10,000
        shown: set[str] = set()  # what the filter lets through (the others are rendered hidden, for live filtering)
        for start in range(0, len(ordered), DASHBOARD_STEP):
            await steps.take(DASHBOARD_STEP)
            shown.update(r.key for r in ordered[start:start + DASHBOARD_STEP] if view.matches(r))
        template = self.gui.templates.get_template("dashboard_rows.html")
        html = []
        for start in range(0, len(ordered), ROW_CHUNK):
            chunk = ordered[start:start + ROW_CHUNK]
            await steps.take(ROW_UNITS * len(chunk))
            html.append(utf8(template.render(rows=chunk, shown=shown, csrf=self.gui.guard.csrf_token, next=here)))
        return html, ordered, shown

    async def state_json(self, request: Request) -> Response:
        """What the live pages poll: every item's live fields, built in steps."""
        steps = Steps(DASHBOARD_STEP)
        parts = []
        async with self.gui.api.big_answers:
            rows = await views.items_in_steps(self.gui.patrol, self.gui.stats, steps)
            for start in range(0, len(rows), ROW_CHUNK):
                chunk = rows[start:start + ROW_CHUNK]
                await steps.take(LIVE_UNITS * len(chunk))
                parts.append(JSON.encode({r.key: r.live() for r in chunk})[1:-1])
        body = b"".join((b'{"patrol":', JSON.encode(self.gui.patrol_info()), b',"items":{', b",".join(parts), b"}}"))
        return secure(Response(body, media_type="application/json"))

    async def detail(self, request: Request) -> Response:
        group = request.url.path.split("/")[1]
        runner = self.gui.find(group, request.path_params["id"])
        if runner is None:
            return self.gui.error(request, 404, f"Unknown {group}",
                                  f"id: there is no {group} with the id {request.path_params['id'][:70]!r}")
        item = views.item(runner, self.gui.patrol.wall(), self.gui.stats)
        opened = self.gui.sees_private(request, runner)
        values = visible_keyvalue(runner, runner.state.keyvalue, proven=opened)
        context: dict[str, Any] = {
            "it": item,
            "runner": runner,
            "keyvalues": views.keyvalues(values) if values is not None else None,
            "locked": not opened,
            "next": auth.here(request),
            "live": True,
        }
        app = self.gui.find_app(runner.id) if group == "app" else None
        if app is not None:
            context.update(await self._app_context(request, app, opened))
        else:
            context.update(settings=settings.settings_of(runner.config),
                           history=views.history_rows(runner.state.history, group, lambda _: None))
        # up to 1,000 history records: ~60 ms of rendering, done in steps (patrol.util.steps)
        steps = Steps(DASHBOARD_STEP)
        template = self.gui.templates.get_template("detail_history_rows.html")
        rows, html = context["history"], []
        for start in range(0, len(rows), ROW_CHUNK):
            chunk = rows[start:start + ROW_CHUNK]
            await steps.take(ROW_UNITS * len(chunk))
            html.append(utf8(template.render(history=chunk, it=item, locked=context["locked"])))
        return self.gui.render(request, "detail.html", context, slot=html)

    async def _app_context(self, request: Request, runner: "AppView", opened: bool) -> dict[str, Any]:
        logdir = LogDir(runner.config.log_root)
        if not opened:  # its logs are private: not even the names and sizes of its runs
            return {"settings": settings.app_settings(runner.config),
                    "history": views.history_rows(runner.state.history, "app", lambda _: None),
                    "current_logs": [], "runs": [], "browse": "", "sharing": [], "previous": None}
        runs: list[Run] = await run_in_threadpool(logdir.runs, MATCH_RUNS)
        previous = await run_in_threadpool(previous_stderr, logdir, runner.state.history)

        def find_log(record: "HistoryRecord") -> str | None:
            relative = logdir.relative(record.log) if record.log else None
            if relative:  # recorded by the engine: exact
                return log_url(runner.id, relative)
            started = record.started  # older records: match by start time
            if started is None:
                return None
            for run in runs:  # newest first
                if run.started <= started + 1:
                    if started - run.started <= MATCH_WINDOW:
                        return log_url(runner.id, run.files.get("stdmerge") or run.files.get("stdout", ""))
                    return None
            return None

        current = []
        for stream, path in views.current_logs(runner).items():
            current.append((stream, f"/app/{runner.id}/log/{stream}", logdir.relative(path)))
        return {
            "settings": settings.app_settings(runner.config),
            "history": views.history_rows(runner.state.history, "app", find_log),
            "current_logs": current,
            "runs": [(run, {s: log_url(runner.id, run.files[s]) for s in STREAMS if s in run.files})
                     for run in runs[:RECENT_RUNS]],
            "browse": f"/app/{runner.id}/logs/",
            "previous": previous,
            "previous_url": log_url(runner.id, previous.relative) if previous else "",
            "previous_exit": views.history_rows([previous.record], "app", lambda _: None)[0] if previous else None,
            "sharing": sorted(other.id for other in self.gui.patrol.apps.values()
                              if other is not runner and LogDir(other.config.log_root).root == logdir.root),
        }

    # -- actions ---------------------------------------------------------------------

    async def action(self, request: Request) -> Response:
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        group, item_id, name = form.get("group", ""), form.get("id", ""), form.get("action", "")
        problems = []
        runner = None
        if group not in ("app", "service"):
            problems.append(f"group: must be app or service (got {group[:40]!r})")
        else:
            runner = self.gui.find(group, item_id)
            if runner is None:
                problems.append(f"id: there is no {group} with the id {item_id[:70]!r}")
        action = ACTIONS.get(name)
        if action is None:
            problems.append(f"action: must be one of {', '.join(ACTIONS)} (got {name[:40]!r})")
        if problems or runner is None or action is None:
            return self.gui.error(request, 400, "The action was not understood", *problems)
        back = safe_next(form.get("next"), f"/{group}/{runner.id}")
        if action.confirm and form.get("confirmed") != "1":
            return self.gui.render(request, "confirm.html", {
                "runner": runner, "action": name, "verb": action.verb, "next": back})
        secret = form.get("secret", "")
        if runner.config.secret and not secret:
            return self._redirect(back, False, f"Could not {action.doing} {describe(runner)}: it has a secret, "
                                               "enter it in the secret field. Nothing was changed.")
        credential = access.item_credential(runner.group, runner.id)
        wait = auth.retry_after(request, credential) if secret else 0
        if wait:
            return self._redirect(back, False, f"Could not {action.doing} {describe(runner)}: {access.too_many(wait)}")
        result = self.gui.api.handle(
            {"group": group, "id": runner.id, "toggle": action.toggle, "secret": secret or None}, "http")
        if secret and "Secret Invalid" in result.body.get("errors", ()):
            auth.record_failure(request, credential)
        if not result.ok:
            errors = "; ".join(str(e) for e in result.body.get("errors", [])) or f"status {result.status}"
            return self._redirect(back, False, f"Could not {action.doing} {describe(runner)}: {errors}")
        return self._redirect(back, True, action.done.format(what=describe(runner)))

    async def unlock(self, request: Request) -> Response:
        """Open the private parts (patrol.api.visibility) of an item with a secret for this
        browser: an app's logs and key/values, a service's key/values (see security.py)."""
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        group = form.get("group", "app") or "app"
        if group not in ("app", "service"):
            return self.gui.error(request, 400, "The action was not understood",
                                  f"group: must be app or service (got {group[:40]!r})")
        runner = self.gui.find(group, form.get("id", ""))
        if runner is None:
            return self.gui.error(request, 400, f"Unknown {group}",
                                  f"id: there is no {group} with the id {form.get('id', '')[:70]!r}")
        back = safe_next(form.get("next"), f"/{group}/{runner.id}")
        what = "Logs and key/values" if group == "app" else "Key/values"
        wait = auth.retry_after(request, access.item_credential(group, runner.id))
        if wait:
            return self._redirect(back, False, f"{what} of {describe(runner)}: {access.too_many(wait)}")
        if not self.gui.secret_matches(runner, form.get("secret", ""), request):
            return self._redirect(back, False, f"{what} of {describe(runner)}: the secret does not match.")
        response = self._redirect(back, True, f"{what} of {describe(runner)} are open for this browser session.")
        self.gui.guard.unlock(response, group, runner.id, runner.config.secret)
        return response

    async def _form(self, request: Request) -> dict[str, str] | Response:
        """The posted form after the CSRF checks, or the error page."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return self.gui.error(request, 415, "Unsupported form",
                                  f"content-type: must be application/x-www-form-urlencoded (got {ctype[:60]!r})")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM:
                return self.gui.error(request, 413, "Form too large", f"body: at most {MAX_FORM} bytes")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=32)
        except (UnicodeDecodeError, ValueError) as exc:
            return self.gui.error(request, 400, "Bad form", f"body: not a valid form ({exc})")
        form: dict[str, str] = {}
        for key, value in pairs:
            form.setdefault(key, value)
        problem = self.gui.guard.check_post(request, form)
        if problem is not None:
            return self.gui.error(request, 403, "Action refused", problem)
        return form

    def _redirect(self, to: str, ok: bool, text: str) -> Response:
        response = RedirectResponse(to, 303)
        self.gui.guard.set_flash(response, ok, text)
        return secure(response)
