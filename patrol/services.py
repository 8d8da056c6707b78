"""One system service's supervision (spec section 5), without ever blocking the loop.

Each reconciliation is one task: run ``status``; if it is not running and not disabled,
run ``start``; if it runs and is disabled, ``stop``; if a restart was asked, ``restart``.
Commands are subprocesses with timeouts (their whole process group is killed when one
hangs), so a hung ``status`` delays only its own service, never the others.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Mapping

import structlog

from .config.model import ServiceConfig
from .process import CommandResult, run_command
from .service import ServiceBackend
from .state import DISABLE, HistoryRecord, State, new_instance_id

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = structlog.get_logger("patrol.services")


class ServiceRunner:
    group = "service"

    def __init__(self, sup: "Supervisor", config: ServiceConfig, backends: Mapping[str, ServiceBackend]) -> None:
        self.sup = sup
        self.config = config
        self.id = config.id
        self.backends = dict(backends)
        self.state = State(history_limit=sup.config.history, disabled=config.disabled)
        with self.state.session() as s:
            s.replace_keyvalue(dict(config.keyvalue))
        self.log = log.bind(service=self.id)
        self.last_reason = ""
        self.last_output = ""
        self.starts = 0
        self._task: asyncio.Task[None] | None = None
        self._again = False

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._schedule()

    def tick(self) -> None:
        if self.state.running:
            self.emit("service.running")
        elif self.state.disabled:
            self.emit("service.disabled")
        self._schedule()

    def toggled(self) -> None:
        self._schedule()

    def _schedule(self) -> None:
        if self.sup.shutting_down:
            return
        if self._task is not None:
            self._again = True  # one more pass once the current one ends
            return
        self._task = self.sup.loop.create_task(self._reconcile())
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            self.log.error("reconcile failed", error=repr(task.exception()))
        if self._again:
            self._again = False
            self._schedule()

    async def _reconcile(self) -> None:
        st = self.state
        if await self.run("status"):
            if not st.running:
                self._new_instance()
            else:
                with st.session() as s:
                    s.set(lastseen=self.sup.wall())
            if st.restart:
                with st.session() as s:
                    s.set(restart=False)
                ok = await self.run("restart")
                self._close("restart" if ok else "restart failed", restart=True)
            elif st.disabled:
                if await self.run("stop"):
                    self._close("disabled")
            return
        if st.running:
            self._close("status failed")
        if st.disabled:
            return
        self.emit("service.start")
        if st.disabled:
            return
        with st.session() as s:
            s.set(restart=False)
            if st.run_once:
                s.set(run_once_consumed=True)
        if await self.run("start"):
            self._new_instance()
        else:
            self.emit("service.start_failed", error=self.last_reason)

    async def stop(self, reason: str = "shutdown") -> None:
        """Stop the service (only used at shutdown when ``stop-on-shutdown`` is set)."""
        if self._task is not None:
            self._task.cancel()
        if await self.run("stop") and self.state.running:
            self._close(reason)

    # -- commands --------------------------------------------------------------------

    async def run(self, action: str) -> bool:
        """Run an action's command; True on success (0 or an ignored exit code)."""
        argv = self.backends[action].command(action, self.config.parameters[action])
        timeout = self.config.status_timeout if action == "status" else self.config.command_timeout
        result = await run_command(argv, self.sup.reaper, timeout=timeout)
        ok = _succeeded(result, self.config.ignore_exit_codes.get(action, frozenset()))
        self.last_output = result.output
        self.last_reason = "" if ok else _describe(action, result)
        level = self.log.debug if ok and action == "status" else (self.log.info if ok else self.log.warning)
        level("service command", action=action, argv=argv, ok=ok, code=result.exit_code,
              timed_out=result.timed_out, output=result.output[-2000:] or None)
        return ok

    # -- state -----------------------------------------------------------------------

    def _new_instance(self) -> None:
        with self.state.session() as s:
            s.set(instance_id=new_instance_id(), started=self.sup.wall(), lastseen=None)
        self.starts += 1
        self.emit("service.started")

    def _close(self, reason: str, *, restart: bool = False) -> None:
        st = self.state
        if not st.running:
            return
        record = HistoryRecord(
            instance_id=st.instance_id,
            started=st.started,
            stopped=self.sup.wall(),
            lastseen=st.lastseen,
            disabled=st.disabled,
            restart=restart or st.restart,
            run_once=st.run_once_consumed,
            shutdown=self.sup.shutting_down,
            reason=reason,
            keyvalue=dict(st.keyvalue),
        )
        with st.session() as s:
            s.append_history(record)
            s.set(instance_id="", started=None, lastseen=None)
            if st.run_once_consumed:
                s.toggle(DISABLE)
            if self.config.keyvalue_clear:
                s.replace_keyvalue({})
        self.last_reason = reason
        self.emit("service.closed", record=record)

    @property
    def phase(self) -> str:
        if self.state.running:
            return "running"
        return "disabled" if self.state.disabled else "stopped"

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    def emit(self, name: str, **extra: Any) -> None:
        self.sup.emit(name, self, **extra)


def _succeeded(result: CommandResult, ignored: frozenset[int]) -> bool:
    if result.status is None or result.timed_out or result.exit_code is None:
        return False
    return result.exit_code == 0 or result.exit_code in ignored


def _describe(action: str, result: CommandResult) -> str:
    if result.status is None:
        return f"{action}: cannot run {result.argv[0]}: {result.error}"
    if result.timed_out:
        return f"{action}: timed out"
    return f"{action}: {result.status}"
