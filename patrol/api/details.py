"""What an API answer about one app adds for a person looking at it (``patrol status ID``):
how it is kept alive, what runs, where its current logs are.

Only in answers to requests about that app (not in ``/status/``, pings or events). The
arguments and the log files are private parts of an app with a secret
(:mod:`patrol.api.visibility`): shown only to a caller that proved it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from patrol.api.visibility import sees_private
from patrol.plugin.model import AppConfig

if TYPE_CHECKING:
    from patrol.engine.readside import ItemView


def app_details(runner: "ItemView", *, proven: bool) -> dict[str, Any]:
    config = runner.config
    if not isinstance(config, AppConfig):
        return {}
    body: dict[str, Any] = {"keepalive": config.keepalive, "binary": config.program}
    if not sees_private(runner, proven=proven):
        return body
    if config.args:
        body["args"] = list(config.args)
    files = runner.state.started_log
    if files is not None and files.stdout:
        body["log-files"] = {"stdmerge": files.stdout} if files.merged else {"stdout": files.stdout,
                                                                             "stderr": files.stderr}
    return body
