"""``GET /metrics`` against a live ``patrol run``: the exposition is what ``promtool``
accepts, shows every kind of item and no secret, and follows the listeners' auth rules."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from patrol.config import ConfigError
from patrol.testing import UNITTEST_ENV, PatrolFactory, free_port, load_document, wait_for

SECRET = "s3cr3t-metrics-5e1f"
KEY, VALUE = "kv-key-9d2", "kv-value-7a4"
TOKEN = "metrics-admin-token-0123456789abcdef"
PINGS = ["TESTAPP_PING_DELAY=0.1", "TESTAPP_PING_EVERY=0.3"]
APPS = {"apps": {"a": {"keepalive": 1, "name": "A", "binary": "/bin/sleep", "pid-path": "a.pid",
                       "working-directory": "/tmp", "log-directory": "/tmp"}}}
PROMTOOL = shutil.which("promtool")
ITEM_METRICS = ("patrol_item_up", "patrol_item_ready", "patrol_item_state", "patrol_item_restarts_total",
                "patrol_item_start_failures_total", "patrol_item_start_time_seconds",
                "patrol_item_last_exit_code", "patrol_item_cpu_seconds_total",
                "patrol_item_resident_memory_bytes", "patrol_item_last_ping_age_seconds", "patrol_item_info")
PATROL_METRICS = ("patrol_build_info", "patrol_api_requests_total", "patrol_state_file_errors_total",
                  "patrol_plugin_failures_total", "process_cpu_seconds_total", "process_resident_memory_bytes",
                  "process_open_fds", "process_start_time_seconds")


def scrape(address: str, token: str | None = None, path: str = "/metrics") -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://{address}{path}", headers=headers),
                                    timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode(errors="replace")


def listening(address: str) -> bool:
    try:
        return scrape(address, None, "/nothing")[0] > 0
    except OSError:
        return False


def samples(text: str) -> dict[str, list[str]]:
    """Sample lines by metric name."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            found.setdefault(re.split(r"[{ ]", line, maxsplit=1)[0], []).append(line)
    return found


def every_kind(factory: PatrolFactory) -> dict:
    apps = {
        "plain": factory.app(1, name="Plain", secret=SECRET, keyvalue={KEY: VALUE}),
        "child": factory.app(2, name="Child"),
        "web": factory.app(3, name='Web "quoted" \\ name', env=PINGS),
        "vault": factory.app(4, name="Vault", secret=SECRET, env=[f"PATROL_SECRET={SECRET}", *PINGS]),
        "crash": factory.app(1, name="Crash", env=["TESTAPP_EXIT=3"], **{"backoff-base": 30}),
    }
    services = {"svc": {"name": "Svc", "service": "svc", "management": "service", "service-command": "/bin/true"}}
    return factory.config(apps=apps, services=services, **{"ping-timeout": 180})


def test_a_scrape_of_every_kind_is_promtool_clean_and_shows_no_secret(patrol):
    p = patrol.start(every_kind(patrol), env=UNITTEST_ENV)

    def settled() -> str | None:
        _, _, text = scrape(p.http)
        found = samples(text)
        pinged = {line.split('id="')[1].split('"')[0] for line in found.get("patrol_item_last_ping_age_seconds", [])}
        crashed = any('id="crash"' in line for line in found.get("patrol_item_last_exit_code", []))
        return text if pinged == {"web", "vault"} and crashed else None

    text = wait_for(settled, 15, "both pingers to ping and the crashing app to exit")
    found = samples(text)
    assert set(ITEM_METRICS) | set(PATROL_METRICS) <= set(found), set(ITEM_METRICS) - set(found)
    assert 'patrol_item_last_exit_code{group="app",id="crash"} 3.0' in found["patrol_item_last_exit_code"]
    assert 'patrol_item_up{group="service",id="svc"} 1.0' in found["patrol_item_up"]
    assert 'patrol_item_state{group="app",id="plain",state="running"} 1.0' in found["patrol_item_state"]
    assert r'name="Web \"quoted\" \\ name"' in text
    for name, lines in found.items():  # low cardinality: the name is a label of the info metric only
        assert name == "patrol_item_info" or not any("name=" in line for line in lines), name
    for leak in (SECRET, KEY, VALUE):
        assert leak not in text
    if PROMTOOL is None:
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), checked


def test_api_requests_are_counted_by_transport_and_code(patrol):
    p = patrol.start(patrol.config(apps={"web": patrol.app(1)}))
    p.api_get(id="web", group="app")
    p.api_get(id="nosuch", group="app")  # refused: 400, as the original
    _, content_type, text = scrape(p.http)
    assert content_type.startswith("text/plain; version=0.0.4")
    lines = samples(text)["patrol_api_requests_total"]
    assert any(line.startswith('patrol_api_requests_total{code="200",transport="http"} ') for line in lines), lines
    assert any(line.startswith('patrol_api_requests_total{code="400",transport="http"} ') for line in lines), lines


def test_with_http_auth_metrics_and_events_need_the_token_and_the_metrics_listener_does_not(patrol):
    token_file = patrol.tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    metrics_at = f"127.0.0.1:{free_port()}"
    config = patrol.config(apps={"web": patrol.app(1)}, metrics={"listen": metrics_at})
    config["http"]["auth"] = {"token-file": str(token_file)}
    p = patrol.start(config, wait=False)
    p.headers = {"Authorization": f"Bearer {TOKEN}"}
    wait_for(lambda: listening(metrics_at) and listening(p.http), 15, "both listeners")
    for path in ("/metrics", "/events?follow=0"):
        assert scrape(p.http, None, path)[0] == 401
        assert scrape(p.http, "wrong-token-wrong-token-wrong", path)[0] == 401
    status, _, text = scrape(p.http, TOKEN)
    assert status == 200 and "patrol_item_up" in text
    status, content_type, _ = scrape(p.http, TOKEN, "/events?follow=0")
    assert status == 200 and content_type.startswith("text/event-stream")
    status, _, text = scrape(metrics_at)  # a scraper needs no admin token on loopback
    assert status == 200 and 'patrol_item_up{group="app",id="web"}' in text
    for path in ("/api/?id=web&group=app", "/status/", "/events", "/"):  # and it serves nothing else
        assert scrape(metrics_at, TOKEN, path)[0] == 404, path


def test_a_metrics_listener_beyond_loopback_needs_auth_or_the_opt_out(tmp_path: Path):
    with pytest.raises(ConfigError) as refused:
        load_document({**APPS, "metrics": {"listen": "0.0.0.0:9421"}})
    assert any("metrics.auth is not set" in e and "metrics.listen" in e for e in refused.value.errors), \
        refused.value.errors
    opened = load_document({**APPS, "metrics": {"listen": "0.0.0.0:9421", "insecure-no-auth": True}})
    assert opened.metrics.listen == "0.0.0.0:9421"
    token = tmp_path / "t"
    token.write_text(TOKEN)
    token.chmod(0o600)
    guarded = load_document({**APPS, "metrics": {"listen": "0.0.0.0:9421", "auth": {"token-file": str(token)}}})
    assert guarded.metrics.auth is not None
    assert load_document(APPS).metrics is None
    assert load_document({**APPS, "metrics": {}}).metrics.listen == "127.0.0.1:9421"


def test_readiness_shows_in_ready_and_state_while_up_stays_1(patrol):
    apps = {"ok": patrol.app(1, readiness={"exec": ["true"], "period": 0.1}),
            "probed": patrol.app(1, readiness={"exec": ["false"], "period": 0.1})}
    p = patrol.start(patrol.config(apps=apps))

    def settled() -> dict[str, list[str]] | None:
        found = samples(scrape(p.http)[2])
        return found if 'patrol_item_state{group="app",id="ok",state="ready"} 1.0' in found["patrol_item_state"] \
            and 'patrol_item_up{group="app",id="probed"} 1.0' in found["patrol_item_up"] else None

    found = wait_for(settled, 15, "ok ready, probed running")
    assert 'patrol_item_up{group="app",id="ok"} 1.0' in found["patrol_item_up"]
    assert 'patrol_item_ready{group="app",id="ok"} 1.0' in found["patrol_item_ready"]
    assert 'patrol_item_ready{group="app",id="probed"} 0.0' in found["patrol_item_ready"]
    assert p.app("probed")["ready"] is False and p.app("ok")["ready"] is True  # the API says the same
