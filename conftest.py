# Shared fixtures live in patrol.testing (test modules cannot import each other under
# --import-mode=importlib); third-party plugin repositories can use the same line.
pytest_plugins = ["patrol.testing", "patrol.testing.users"]

import compileall
import os
from pathlib import Path

import pytest
from hypothesis import settings

# On CI the property tests replay the same examples every run (a red CI must mean a
# change broke something, not that the dice rolled differently); locally they explore.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


#: The checkout's packages, installed editable: ``patrol run``, ``patrol check`` and the
#: other commands the suite starts (about a thousand Python processes) import them from here.
SOURCES = ("patrol", "plugins", "examples/plugins")


def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile the checkout once, before the workers start, as pip does for what it
    installs. An editable install runs the sources, and with ``PYTHONDONTWRITEBYTECODE``
    set (as in CI and sandbox shells, this machine's included) nothing ever writes their
    ``.pyc``: each of the suite's ~280 ``patrol run`` started by compiling its ~70 modules
    again (0.71 -> 0.63 s of CPU a start, measured), and every ``patrol check`` or
    ``patrol plugins`` did the same. Python still checks each ``.pyc`` against its source,
    so an edited module is compiled again, never run stale. Up to date, this takes ~50 ms."""
    if hasattr(config, "workerinput"):  # xdist worker: the controller did it
        return
    for source in SOURCES:
        compileall.compile_dir(Path(config.rootpath, source), quiet=1)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: half again as many workers as cores (3 on 2 cores). The suite's tests
    mostly wait on real processes, sockets and timers: in a full run on this 2-core machine
    with 2 workers, each was busy 95 % of the run but the suite used 64 % of the two cores
    (443 s of CPU in 344 s); with 3 workers the run took 298 s. ``PYTEST_XDIST_AUTO_NUM_WORKERS``
    still decides when set (xdist's own rule then)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    cores = len(os.sched_getaffinity(0))
    return cores + max(1, cores // 2)


#: Modules with the suite's longest tests, run first, longest first. pytest-xdist's
#: worksteal hands each worker a contiguous share of the collection and lets an idle worker
#: steal from the end of another's: tests collected late are the run's last, and one of
#: 20-60 s there (mypy, a wheelhouse install, a browser walk-through) left the other core
#: idle while it finished. Run first, they overlap with the other worker's share and the
#: run ends on short tests. Only the order changes (each module's tests stay together, in
#: their order, so module-scoped fixtures are still made once per worker).
EARLY = (
    "tests/project/test_types.py",
    "tests/project/test_packaging.py",
    "tests/web/test_gui_browser.py",
    "tests/engine/test_state_file.py",
    "tests/api/test_api_fuzz.py",
    "tests/web/test_security_connections.py",
    "tests/engine/test_logs_disk.py",
    "tests/engine/test_persistence.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests of :data:`EARLY` to the front (a stable sort: the rest keep their order)."""
    rank = {Path(config.rootpath, module): n for n, module in enumerate(EARLY)}
    gone = [str(path) for path in rank if not path.exists()]
    if gone:  # renamed or removed: say so, rather than let the order quietly go back
        raise pytest.UsageError(f"conftest.EARLY names modules that do not exist: {gone}")
    items.sort(key=lambda item: rank.get(item.path, len(EARLY)))
