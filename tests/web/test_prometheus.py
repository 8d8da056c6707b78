"""Patrol and a real Prometheus: scraped every second, an app killed shows as a restart
and up again through Prometheus' query API; the shipped alert rules pass ``promtool``
(checks and unit tests); every metric the rules and the Grafana dashboard use is in a
real scrape. Skipped with the reason only where Debian's ``prometheus`` is absent
(``.ci/run`` installs it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from patrol.testing import UNITTEST_ENV, PatrolFactory, PatrolProcess, free_port, wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RULES = EXAMPLES / "prometheus" / "patrol.rules.yml"
RULE_TESTS = EXAMPLES / "prometheus" / "patrol.rules.test.yml"
DASHBOARD = EXAMPLES / "grafana" / "patrol.json"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
#: series Prometheus itself writes for every target (not Patrol's)
SCRAPE_SERIES = {"up"}
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "offset", "inf", "nan"}
PINGS = ["TESTAPP_PING_DELAY=0.1", "TESTAPP_PING_EVERY=0.3"]


def need(binary: str | None, name: str) -> str:
    if binary is None:
        pytest.skip(f"{name} is not installed (apt-get install prometheus; .ci/run installs it)")
    return binary


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, label matchers, ranges,
    grouping clauses, functions and keywords taken out)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\w+", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", expr):
        if match.group(2) is None and match.group(1).lower() not in PROMQL_WORDS:
            names.add(match.group(1))
    return names


def rule_names() -> set[str]:
    names: set[str] = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            names |= metric_names(rule["expr"])
    return names


def dashboard_names() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    names: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= metric_names(target["expr"])
    for variable in dashboard["templating"]["list"]:
        query = variable.get("definition", "")
        names |= set(re.findall(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,", query))
    return names


def test_the_name_reader_finds_metrics_and_nothing_else():
    expr = ('count((patrol_item_up{instance=~"$instance",x="a b"} == 0) unless on (job, id) '
            'rate(process_cpu_seconds_total[5m])) or vector(0) + time() - foo:bar_total offset 5m')
    assert metric_names(expr) == {"patrol_item_up", "process_cpu_seconds_total", "foo:bar_total"}
    assert {"patrol_item_up", "patrol_item_restarts_total", "patrol_item_state", "up"} <= rule_names()
    assert len(dashboard_names()) >= 15


def test_the_rules_pass_promtool_check_and_their_unit_tests():
    promtool = need(PROMTOOL, "promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, checked
    tested = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                            capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    assert all(t.get("interval") for t in tests)
    alerted = {a["alertname"] for t in tests for a in t["alert_rule_test"] if a["exp_alerts"]}
    assert alerted == {"PatrolDown", "PatrolItemDown", "PatrolItemFlapping", "PatrolItemGivenUp",
                       "PatrolItemUnready"}


def test_the_scrape_config_example_is_valid(tmp_path):
    promtool = need(PROMTOOL, "promtool")
    token = tmp_path / "token"
    token.write_text("t" * 32)
    config = (EXAMPLES / "prometheus" / "prometheus.yml").read_text().replace(
        "/etc/prometheus/patrol-metrics.token", str(token))
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(RULES, tmp_path / RULES.name)
    checked = subprocess.run([promtool, "check", "config", "prometheus.yml"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked


class Prometheus:
    """A real Prometheus on a free loopback port, its own storage, scraping every second."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": [{"job_name": "patrol", "static_configs": [{"targets": targets}]}]}
        (workdir / "prometheus.yml").write_text(json.dumps(config))
        self.log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [need(PROMETHEUS, "prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address={self.address}"],
            cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path: str, **query: str) -> Any:
        url = f"http://{self.address}{path}?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return json.loads(resp.read())
        except OSError:
            assert self.proc.poll() is None, f"prometheus exited: {self.proc.returncode}"
            return None

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=promql)
        return answer["data"]["result"] if answer and answer.get("status") == "success" else []

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PatrolProcess, Prometheus]]:
    """One Patrol and its Prometheus for the module (a start and a first scrape cost ~5 s):
    the restart test kills only its own web; the other test only reads metric names."""
    need(PROMETHEUS, "prometheus")
    patrol = PatrolFactory(tmp_path_factory.mktemp("scraped"))
    try:
        apps = {"web": patrol.app(1, name="Web"), "child": patrol.app(2), "pinger": patrol.app(3, env=PINGS),
                "crash": patrol.app(1, env=["TESTAPP_EXIT=3"], **{"backoff-base": 30})}
        p = patrol.start(patrol.config(apps=apps, **{"ping-timeout": 180}), env=UNITTEST_ENV)
        storage = patrol.tmp_path / "prometheus"
        storage.mkdir()
        prometheus = Prometheus(storage, [p.http])
        try:
            wait_for(lambda: prometheus.value('up{job="patrol"}') == 1, 30, "Prometheus to scrape Patrol")
            yield p, prometheus
        finally:
            prometheus.stop()
    finally:
        patrol.cleanup()


def test_prometheus_sees_a_killed_app_restart_and_come_back(scraped):
    p, prometheus = scraped
    pid = p.running_pid("web", ready=True)
    wait_for(lambda: prometheus.value('patrol_item_up{id="web"}') == 1, 15, "web up in Prometheus")
    assert prometheus.value('patrol_item_restarts_total{id="web"}') == 0
    os.kill(pid, signal.SIGKILL)
    p.running_pid("web", other_than=pid)
    wait_for(lambda: (prometheus.value('patrol_item_restarts_total{id="web"}') or 0) >= 1, 20,
             "the restart in Prometheus")
    wait_for(lambda: prometheus.value('patrol_item_up{id="web"}') == 1, 15, "web up again in Prometheus")
    info = prometheus.query('patrol_item_info{id="web"}')
    assert info and info[0]["metric"]["name"] == "Web" and info[0]["metric"]["keepalive"] == "pid-patrol"


def test_every_metric_of_the_rules_and_the_dashboard_is_in_a_real_scrape(scraped):
    p, prometheus = scraped
    wanted = rule_names() | dashboard_names()

    def complete() -> bool:
        answer = prometheus.get("/api/v1/label/__name__/values")
        return bool(answer) and wanted <= set(answer["data"])

    if not wait_for_quietly(complete, 20):
        answer = prometheus.get("/api/v1/label/__name__/values") or {"data": []}
        pytest.fail(f"not in the scrape: {sorted(wanted - set(answer['data']))}")
    from_patrol = wanted - SCRAPE_SERIES
    assert from_patrol and all(n.startswith(("patrol_", "process_")) for n in from_patrol), from_patrol


def wait_for_quietly(predicate: Any, timeout: float) -> bool:
    try:
        wait_for(predicate, timeout, "")
        return True
    except AssertionError:
        return False
