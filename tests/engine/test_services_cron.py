"""A real Debian service, driven through the real ``service`` command and ``/etc/init.d``.

``cron`` is started and stopped for real (``.ci/run`` installs it; design.md §6: its
sysvinit script's ``status`` exits 3 when stopped, 0 when running). Whatever state cron
was in before the test is restored after it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from patrol.testing import UNITTEST_ENV, wait_for

pytestmark = pytest.mark.root

INITD_SCRIPT = "/etc/init.d/cron"
SERVICE = shutil.which("service", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def cron(action: str) -> int:
    """Run ``service cron ACTION`` the way an operator would; its exit code."""
    assert SERVICE is not None
    return subprocess.run([SERVICE, "cron", action], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=60).returncode


def cron_running() -> bool:
    return cron("status") == 0


@pytest.fixture
def cron_restored():
    """Skip unless cron can be driven; put it back as it was afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root: starts and stops the system's cron service")
    if not os.access(INITD_SCRIPT, os.X_OK) or SERVICE is None:
        pytest.skip(f"cron is not installed ({INITD_SCRIPT} or service(8) missing): apt-get install -y cron")
    was_running = cron_running()
    if was_running:
        assert cron("stop") == 0
        wait_for(lambda: not cron_running(), 20, "cron to stop before the test")
    try:
        yield
    finally:
        if cron_running() != was_running:
            cron("start" if was_running else "stop")
        assert cron_running() == was_running, "could not restore cron's original state"


@pytest.mark.parametrize("management", ["service", "initd"])
def test_patrol_starts_a_stopped_real_service_and_stops_it_on_disable(cron_restored, patrol, management):
    assert not cron_running()
    services = {"cron": {"name": "Cron", "service": "cron", "management": management}}
    p = patrol.start(patrol.config(services=services), env=UNITTEST_ENV)
    wait_for(lambda: p.status()["service"]["cron"].get("state") == "running", 30, "Patrol to start cron")
    assert cron_running()

    status, _ = p.api(id="cron", group="service", toggle=2)
    assert status == 200
    wait_for(lambda: p.status()["service"]["cron"].get("state") == "disabled", 30, "Patrol to stop cron")
    assert not cron_running()
    record = p.status()["service"]["cron"]["history"][0]
    assert record["disabled"] is True and "restart" not in record
    assert p.terminate() == 0
