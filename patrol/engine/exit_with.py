"""``exit-with``: Patrol as a container's main process ends when its main app ends.

Patrol then shuts down (every other app stopped) and exits with what a shell (and tini)
report for that app, so ``docker run`` and orchestrators see the app's own outcome.
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog

from patrol.plugin.keepalive import ExitStatus

log = structlog.get_logger("patrol.engine")


class Host(Protocol):
    config: Any
    shutting_down: bool
    exit_code: int

    def request_shutdown(self) -> None: ...


def main_ended(host: Host, runner: Any, start_failed: bool) -> bool:
    """An app's run ended by itself: if it is the ``exit-with`` app, ask for the
    shutdown and keep its exit code for Patrol's (True), else False."""
    if runner.id != host.config.exit_with or host.shutting_down:
        return False
    host.exit_code = main_exit_code(runner.last_exit, start_failed)
    log.info("the exit-with app ended: shutting down", app=runner.id, exit_code=host.exit_code)
    host.request_shutdown()
    return True


def main_exit_code(status: ExitStatus | None, start_failed: bool) -> int:
    """Patrol's exit code when its ``exit-with`` app ended, as a shell (and tini) report
    a program's end: its exit code, 128 + N when signal N killed it, 127 when it could
    not be started, 1 when it ended without an exit Patrol saw (an expired ping)."""
    if start_failed:
        return 127
    if status is None:
        return 1
    if status.signal is not None:
        return 128 + status.signal
    return status.code if status.code is not None else 1
