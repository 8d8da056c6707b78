"""What a probe is handed (:class:`patrol.ProbeTarget`): the item it checks, the one way
to run a program for it, and the lines of its output.

A program a probe runs goes through the kernel's one spawn path
(:func:`patrol.engine.spawn.run_command`): for an app with the app's environment,
working directory and process settings (user, limits, nice, umask, env file), for a service with Patrol's own environment (as its commands get);
in a session of its own, reaped by the one reaper, its whole group killed at the
timeout or when the check is cancelled. Output listeners belong to the run: they end
with it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

from patrol.engine.host import Host
from patrol.engine.item_state import State
from patrol.engine.output_lines import OutputLines, Subscription
from patrol.engine.spawn import ProcessSettings, run_command
from patrol.plugin.keepalive import Cancellable
from patrol.plugin.model import AppConfig, ServiceConfig
from patrol.plugin.probe import CommandOutcome


class TargetOwner(Protocol):
    """The runner of the item a probe checks."""

    sup: Host
    group: str
    id: str
    state: State

    @property
    def config(self) -> AppConfig | ServiceConfig: ...

    @property
    def log(self) -> Any: ...


#: the environment a probe's program gets (None: Patrol's own, as service commands get)
Environment = Callable[[], Mapping[str, str]] | None
#: the current run's output lines (None: Patrol does not read them)
Output = Callable[[], OutputLines | None] | None


class RunTarget:
    """The :class:`patrol.ProbeTarget` of one probe of one run."""

    def __init__(self, owner: TargetOwner, timeout: float, environment: Environment = None,
                 output: Output = None) -> None:
        self.owner = owner
        self.timeout = timeout
        self.environment = environment
        self.output = output
        #: ask for a look at once (set by the probe's loop)
        self.poke: Callable[[], None] = lambda: None

    @property
    def group(self) -> str:
        return self.owner.group

    @property
    def id(self) -> str:
        return self.owner.id

    @property
    def config(self) -> AppConfig | ServiceConfig:
        return self.owner.config

    @property
    def pid(self) -> int:
        return self.owner.state.pid if self.owner.group == "app" else 0

    @property
    def log(self) -> Any:
        return self.owner.log

    def now(self) -> float:
        return self.owner.sup.now()

    async def run(self, argv: Sequence[str], timeout: float) -> CommandOutcome:
        if not argv:
            return CommandOutcome(None, error="no program to run")
        try:
            env = self.environment() if self.environment is not None else None
        except Exception as exc:  # noqa: BLE001 - e.g. an env file that became malformed: this check fails
            return CommandOutcome(None, error=str(exc))
        config = self.owner.config
        if isinstance(config, AppConfig):  # as the app runs: its user, limits, nice, umask, env file
            cwd, settings = config.working_directory, ProcessSettings.of_app(config)
        else:
            cwd, settings = "/", None
        result = await run_command(argv, self.owner.sup.reaper, timeout=timeout, env=env, cwd=cwd, settings=settings)
        return CommandOutcome(result.status, result.output, result.timed_out, result.error)

    def watch_output(self, callback: Callable[[str, str], None]) -> Cancellable | None:
        output = self.output() if self.output is not None else None
        if output is None:
            return None
        subscription: Subscription = output.listen(callback)
        return subscription

    def check_now(self) -> None:
        self.poke()
