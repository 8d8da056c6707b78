"""What an API answer about one app adds for a person looking at it (``patrol status ID``):
how it is kept alive, what runs, where its current logs are; and the fields of every
answer that are not the original's: readiness and probes, a copy's set.

Only in answers to requests about that app (not in ``/status/``, pings or events). The
arguments and the log files are private parts of an app with a secret
(:mod:`patrol.api.visibility`): shown only to a caller that proved it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

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


def health_fields(runner: "ItemView", time_of: Callable[[float | None], str]) -> dict[str, Any]:
    """``ready`` (always: false is an answer), the probes' last answers, the app's own
    status line (every answer about an item; they change without a change session)."""
    health = runner.health
    fields: dict[str, Any] = {"ready": runner.ready}
    for kind, probe in health.probes().items():
        answer: dict[str, Any] = {"ok": probe.ok, "at": time_of(probe.at)}
        if probe.message:
            answer["message"] = probe.message
        fields[kind] = answer
    if health.status_text:
        fields["status-text"] = health.status_text
    return fields


def instance_fields(runner: "ItemView") -> dict[str, Any]:
    """A copy of a set of instances: the set's id and the copy's number (kept even when 0)."""
    config = runner.config
    if isinstance(config, AppConfig) and config.instance_of:
        return {"instance-of": config.instance_of, "instance": config.instance}
    return {}
