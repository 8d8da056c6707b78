"""``readiness``, ``liveness`` and ``depends-on`` in the config: what loads, what is refused,
and how ``patrol check`` says so (docs/health.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from patrol.config import ConfigError, Methods, parse_config
from patrol.testing import installed_plugins, item_errors, load_document, load_item

PLUGINS = installed_plugins()


def app(**keys: Any) -> dict[str, Any]:
    return {"keepalive": 1, "name": "A", "binary": "a", "working-directory": "/srv", "log-directory": "logs",
            "pid-path": "a.pid", **keys}


def service(**keys: Any) -> dict[str, Any]:
    return {"name": "S", "service": "s", "management": "service", **keys}


def errors_of(document: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_document(document)
    return caught.value.errors


# -- probes ------------------------------------------------------------------------------


def test_a_probe_with_its_shorthand_timing_keys_and_defaults() -> None:
    loaded = load_item("apps", app(readiness={"tcp": 8080, "period": 0.5, "Success-Threshold": 2},
                                   liveness={"http": {"url": "http://127.0.0.1:8080/health"}}))
    ready, live = loaded.readiness, loaded.liveness
    assert (ready.probe, dict(ready.settings)) == ("tcp", {"port": 8080, "host": "127.0.0.1"})
    assert (ready.period, ready.success_threshold, ready.failure_threshold, ready.timeout) == (0.5, 2, 3, 1.0)
    assert live.probe == "http" and live.settings["status"] == "200-399" and live.initial_delay == 0
    assert dict(load_item("apps", app(readiness={"exec": ["pg_isready", "-q"]})).readiness.settings) == {
        "command": ("pg_isready", "-q")}


def test_probe_mistakes_name_the_key_and_the_rule() -> None:
    errors = item_errors("apps", app(readiness={"tcp": 0, "period": 0, "timeout": 0, "failure-threshold": 1.5}))
    assert "config: apps.x.readiness.tcp.port: must be a port 1..65535 (got 0)" in errors
    assert "config: apps.x.readiness.period: must be at least 0.01 and at most 86400 (got 0)" in errors
    assert "config: apps.x.readiness.timeout: must be greater than 0 and at most 3600 (got 0)" in errors
    assert "config: apps.x.readiness.failure-threshold: must be an integer (got number 1.5)" in errors
    assert item_errors("apps", app(readiness={"period": 1})) == [
        'config: apps.x.readiness: names no probe: add one, e.g. {"tcp": 8080} (installed: exec, file, http, log, '
        'tcp)']
    assert item_errors("apps", app(liveness={"tcp": 1, "http": "http://x/"})) == [
        "config: apps.x.liveness: names 2 probes (tcp, http): one per liveness"]
    assert item_errors("apps", app(readiness={"smtp": 25})) == [
        "config: apps.x.readiness.smtp: unknown probe 'smtp' (installed: exec, file, http, log, tcp)"]
    assert item_errors("apps", app(readiness={"http": {"url": "ftp://x", "contains": 5}})) == [
        "config: apps.x.readiness.http.contains: must be a string (got number 5)"]
    assert item_errors("apps", app(readiness={"log": "(unclosed"})) == [
        "config: apps.x.readiness.log.pattern: is not a regular expression: missing ), unterminated subpattern "
        "at position 0"]
    assert item_errors("apps", app(readiness={"exec": "true"})) == [
        "config: apps.x.readiness.exec.command: must be an array (got string \"true\")"]


def test_a_service_may_have_readiness_but_no_liveness_and_no_log_probe() -> None:
    loaded = load_item("services", service(readiness={"exec": ["true"]}))
    assert loaded.readiness.probe == "exec"
    assert item_errors("services", service(readiness={"log": "up"})) == [
        "config: services.x.readiness.log: the log probe needs an app (its process or its output): services "
        "cannot use it"]
    assert any("liveness: unknown key" in w for w in _warnings({"services": {"x": service(liveness={"tcp": 1})}}))


def test_without_the_probes_installed_the_package_is_named() -> None:
    document = {"apps": {"x": app(readiness={"http": "http://127.0.0.1/"})}}
    with pytest.raises(ConfigError) as caught:
        parse_config(document, Methods(PLUGINS.keepalives, PLUGINS.services))  # no probe registry at all
    assert caught.value.errors == ["config: apps.x.readiness.http: probe 'http' needs: pip install patrol-probes"]


def _warnings(document: dict[str, Any]) -> list[str]:
    _, warnings = parse_config(document, Methods(PLUGINS.keepalives, PLUGINS.services, PLUGINS.probes))
    return warnings


# -- depends-on ----------------------------------------------------------------------------


def test_depends_on_is_stored_explicitly_and_an_array_waits_for_ready() -> None:
    config = load_document({
        "apps": {"web": app(**{"depends-on": {"DB": "started", "service/cron": "ready"}}),
                 "db": app(), "worker": app(**{"depends-on": ["web", "cron2"]})},
        "services": {"cron": service(), "cron2": service(**{"depends-on": {"db": "completed"}})},
    })
    assert dict(config.apps["web"].depends_on) == {"app/db": "started", "service/cron": "ready"}
    assert dict(config.apps["worker"].depends_on) == {"app/web": "ready", "service/cron2": "ready"}
    assert dict(config.services["cron2"].depends_on) == {"app/db": "completed"}


def test_depends_on_mistakes_are_refused() -> None:
    assert errors_of({"apps": {"a": app(**{"depends-on": {"b": "whenever"}}), "b": app(**{"depends-on": 5})}}) == [
        "config: apps.a.depends-on.b: must be one of started, ready, completed, completed-successfully "
        '(got string "whenever")',
        "config: apps.b.depends-on: must be an object of id -> condition, or an array of ids (got number 5)",
    ]
    errors = errors_of({
        "apps": {"a": app(**{"depends-on": {"nope": "ready", "x": "ready", "a": "started", "job/b": "ready",
                                            "service/x": "completed", "app/zz": "ready"}}), "x": app()},
        "services": {"x": service()},
    })
    assert errors == [
        "config: apps.a.depends-on.nope: unknown id 'nope': no app or service has it",
        'config: apps.a.depends-on.x: is ambiguous: an app and a service are both called "x" (write "app/x" or '
        '"service/x")',
        "config: apps.a.depends-on.a: cycle: a -> a (an item cannot wait for itself)",
        'config: apps.a.depends-on["job/b"]: must be an id, "app/ID" or "service/ID" (got "job/b")',
        'config: apps.a.depends-on["service/x"]: a service never completes: use "started" or "ready" (got '
        '"completed")',
        "config: apps.a.depends-on[\"app/zz\"]: unknown app 'zz'",
    ]


def test_a_dependency_on_an_item_with_errors_is_not_called_unknown() -> None:
    errors = errors_of({"apps": {"a": app(**{"depends-on": ["b"]}), "b": app(name="")}})
    assert errors == ["config: apps.b.name: is required and must not be empty"]


def test_each_cycle_is_printed_once_as_people_follow_it() -> None:
    errors = errors_of({
        "apps": {"a": app(**{"depends-on": ["b"]}), "b": app(**{"depends-on": ["c"]}),
                 "c": app(**{"depends-on": {"a": "started", "d": "ready"}}), "d": app(),
                 "e": app(**{"depends-on": ["service/s"]})},
        "services": {"s": service(**{"depends-on": ["app/e"]})},
    })
    assert errors == [
        "config: apps.a.depends-on: cycle: a -> b -> c -> a (none of them could ever start)",
        "config: apps.e.depends-on: cycle: e -> s -> e (none of them could ever start)",
    ]


def test_a_long_chain_is_no_cycle_and_loads() -> None:
    apps = {f"a{n}": app(**{"depends-on": [f"a{n + 1}"]}) for n in range(3000)} | {"a3000": app()}
    config = load_document({"apps": apps})
    assert dict(config.apps["a0"].depends_on) == {"app/a1": "ready"}


def test_patrol_check_refuses_a_cycle_and_an_unknown_id_printing_the_cycle(tmp_path: Path) -> None:
    path = tmp_path / "patrol.json"
    path.write_text(json.dumps({"apps": {"a": app(**{"depends-on": {"b": "started"}}),
                                         "b": app(**{"depends-on": {"a": "ready", "db": "ready"}})}}))
    done = subprocess.run([sys.executable, "-m", "patrol", "check", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{path}: apps.a.depends-on: cycle: a -> b -> a (none of them could ever start)" in done.stderr
    assert f"{path}: apps.b.depends-on.db: unknown id 'db': no app or service has it" in done.stderr


def test_an_http_probe_cannot_be_made_to_send_more_headers_or_requests() -> None:
    for key, value in (("host-header", "x\r\nX-Admin: 1"), ("url", "http://127.0.0.1:1/a b\r\nX: 1")):
        settings = {"url": "http://127.0.0.1:8080/", key: value}
        assert item_errors("apps", app(readiness={"http": settings})) == [
            f"config: apps.x.readiness.http.{key}: must be one line without spaces or control characters "
            f"(got {value!r})"]
