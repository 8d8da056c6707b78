"""Test helpers and pytest fixtures for Patrol and its plugins.

Load them in a ``conftest.py`` with ``pytest_plugins = ["patrol.testing"]``. Everything
here uses real things: real ``patrol run`` processes, real sockets on 127.0.0.1 with
ports chosen free at test time, real files. Waits are conditions with a deadline
(:func:`wait_for`), never fixed sleeps. Every process a test starts is found again by a
marker in its environment and killed by pid at teardown, so nothing is left behind.

It looks at Patrol from outside (its own ``/proc`` reads and JSON checks), so tests do
not check Patrol with Patrol's own code; kernel parts are imported where needed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest

from patrol.testing.files import files_contain

T = TypeVar("T")
TESTAPP = Path(__file__).with_name("testapp.py")
UNITTEST_ENV = {"PATROL_UNITTEST": "I KNOW WHAT I AM DOING"}


class Timeout(AssertionError):
    pass


def strict_json(payload: bytes) -> Any:
    """JSON as a strict client parses it: NaN and Infinity are not JSON.

    Independent of Patrol's own parser, so tests check Patrol's answers from outside.
    """

    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(payload, parse_constant=refuse)


def installed_plugins(*, strict: bool = True) -> Any:
    """Every installed plugin, loaded as ``patrol run`` loads them (``.keepalives``,
    ``.services`` and ``.transports`` resolve names and the original numbers). ``strict``:
    a plugin that fails to load raises instead of being listed as failed."""
    from patrol.plugin.loader import Plugins

    return Plugins(strict=strict)


def load_document(document: dict[str, Any]) -> Any:
    """A whole config document (as decoded JSON) through the real loader and the
    installed plugins: the :class:`patrol.PatrolConfig` ``patrol run`` would run.

    Raises :class:`patrol.config.ConfigError` with every problem, as ``patrol check``.
    """
    from patrol.config import Methods, parse_config

    plugins = installed_plugins()
    config, _ = parse_config(document, Methods(plugins.keepalives, plugins.services, plugins.probes))
    return config


def load_item(group: str, item: dict[str, Any], item_id: str = "x") -> Any:
    """Load one app (``group="apps"``) or service (``"services"``) through the real
    config loader and the installed plugins: the model a plugin will be handed.

    Raises :class:`patrol.config.ConfigError` with every problem, as ``patrol check``.
    """
    from patrol.config import Methods, parse_config
    from patrol.plugin.loader import Plugins

    plugins = Plugins(strict=True)
    methods = Methods(plugins.keepalives, plugins.services, plugins.probes)
    config, _ = parse_config({group: {item_id: item}}, methods)
    return getattr(config, group)[item_id]


def item_errors(group: str, item: dict[str, Any], item_id: str = "x") -> list[str]:
    """The errors :func:`load_item` reports for ``item`` (fails the test if there are none)."""
    from patrol.config import ConfigError

    try:
        load_item(group, item, item_id)
    except ConfigError as exc:
        return list(exc.errors)
    raise AssertionError(f"{group}.{item_id} loaded without errors: {item!r}")


def wait_for(predicate: Callable[[], T | None], timeout: float = 10.0, message: str = "condition",
             max_delay: float = 0.1) -> T:
    """Poll ``predicate``, at most ``max_delay`` s apart, until it is truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {message} (last value: {value!r})")
        time.sleep(delay)
        delay = min(delay * 1.5, max_delay)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def pids_with_marker(marker: str) -> list[int]:
    """Pids of live processes whose environment or command line contains ``marker``."""
    needle = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for name in ("environ", "cmdline"):
            try:
                with open(f"/proc/{entry}/{name}", "rb") as f:
                    if needle in f.read():
                        if pid_alive(int(entry)):
                            found.append(int(entry))
                        break
            except OSError:
                break
    return found


def kill_marked(marker: str) -> list[int]:
    """SIGKILL every process carrying ``marker``; returns the pids that were alive."""
    pids = pids_with_marker(marker)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return pids


def write_testapp(directory: Path, name: str = "testapp") -> Path:
    """An executable wrapper that execs the test app with this Python (same pid), ``-S``: no site."""
    path = directory / name  # -S: stdlib only, so skip the venv's .pth files (~15 ms CPU a start, 20%)
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{TESTAPP}" "$@"\n')
    path.chmod(0o755)
    return path


class PatrolProcess:
    """A real ``patrol run`` in a subprocess, with helpers to talk to it.

    ``command`` is the ``patrol`` to run (default: this Python's ``-m patrol``); give an
    installed ``.../bin/patrol`` to test an installation.
    """

    def __init__(self, workdir: Path, config: dict[str, Any], marker: str, env: dict[str, str] | None = None,
                 suffix: str = ".json", command: list[str] | None = None) -> None:
        self.workdir = workdir
        self.command = command or [sys.executable, "-m", "patrol"]
        self.marker = marker
        self.config = config
        self.config_path = workdir / f"patrol-{marker[:8]}{suffix}"
        self.log_path = workdir / f"patrol-{marker[:8]}.log"
        self.http = config.get("http", {}).get("listen", "")
        self.udp = config.get("udp", {}).get("listen", "")
        self.env = {**os.environ, "PATROL_TEST_MARKER": marker, "PATROL_STRICT_PLUGINS": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        #: sent with every request (e.g. ``Authorization`` for a Patrol with http.auth)
        self.headers: dict[str, str] = {}

    def write_config(self) -> None:
        if self.config_path.suffix != ".toml":
            self.config_path.write_text(json.dumps(self.config, indent=2))

    def start(self, wait: bool = True) -> "PatrolProcess":
        self.write_config()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.command, "run", str(self.config_path), "--log-format", "json", "--log-level", "debug"],
            cwd=self.workdir, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        if wait and self.http:
            wait_for(self._up, 15, f"patrol to serve {self.http}/status/ (log: {self.log_path})", max_delay=0.02)
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"patrol exited with {self.proc.returncode}:\n{self.log()}")
        try:
            self.get("/status/")
            return True
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- HTTP ------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(f"http://{self.http}{path}", data=data, method=method,
                                     headers={**self.headers, **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode(errors="replace")

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        return body

    def status(self) -> dict[str, Any]:
        return self.get("/status/")

    def app(self, app_id: str) -> dict[str, Any]:
        return self.status()["apps"][app_id]

    def running_pid(self, app_id: str, other_than: int = 0, timeout: float = 15, ready: bool = False) -> int:
        """Wait until ``app_id`` runs (under a pid other than ``other_than``); its pid.

        ``ready``: also wait for the test app's "started" line, printed once its signal
        handlers are installed (a signal sent earlier would kill it instead).
        """

        def pid() -> int | None:
            entry = self.app(app_id)
            found = entry.get("pid") if entry.get("started") else None
            if not found or found == other_than:
                return None
            return found if not ready or self.app_log_has(f"started, pid {found},") else None

        return wait_for(pid, timeout, f"{app_id} running")

    def app_log_has(self, text: str, directory: str = "logs") -> bool:
        """Does any log file under ``directory`` contain ``text``? Rotated generations
        count: a chatty app's first lines may already have been rotated out."""
        return files_contain(self.workdir / directory, "*.log*", text)

    def log_records(self) -> list[dict[str, Any]]:
        """Patrol's own log, parsed (it runs with ``--log-format json``)."""
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def api(self, **request: Any) -> tuple[int, dict[str, Any]]:
        return self.request("POST", "/api/", request)

    def api_get(self, **query: Any) -> tuple[int, dict[str, Any]]:
        return self.request("GET", "/api/?" + urllib.parse.urlencode(query))

    def udp_request(self, request: Any, raw: bytes | None = None, timeout: float = 1.0) -> dict[str, Any] | None:
        host, _, port = self.udp.rpartition(":")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(raw if raw is not None else json.dumps(request).encode(), (host, int(port)))
            try:
                return json.loads(sock.recv(65536))
            except socket.timeout:
                return None

    # -- lifecycle -------------------------------------------------------------------

    def terminate(self, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"patrol did not exit within {timeout}s after SIGTERM:\n{self.log()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self) -> list[int]:
        """Kill Patrol and every process of this test; returns the leftovers found."""
        self.kill()
        if hasattr(self, "_log"):
            self._log.close()
        return kill_marked(self.marker)


class PatrolFactory:
    """Builds configs in a temp dir and starts ``patrol run`` on them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.marker = f"patrol-test-{uuid.uuid4()}"
        self.processes: list[PatrolProcess] = []
        self.testapp = write_testapp(tmp_path)

    def app(self, keepalive: int | str = 1, **keys: Any) -> dict[str, Any]:
        """A test-app config: the marker goes into its env so teardown can find it."""
        env = [f"PATROL_TEST_MARKER={self.marker}", *keys.pop("env", [])]
        base = {
            "keepalive": keepalive,
            "name": keys.pop("name", "Test App"),
            "binary": str(self.testapp.name),
            "working-directory": str(self.tmp_path),
            "log-directory": "logs",
            "pid-path": "testapp.pid",
            "env": env,
        }
        base.update(keys)
        return base

    def config(self, apps: dict[str, Any] | None = None, services: dict[str, Any] | None = None,
               **top: Any) -> dict[str, Any]:
        http, udp = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
        config: dict[str, Any] = {"http": {"listen": http}, "udp": {"listen": udp}}
        if apps:
            config["apps"] = apps
        if services:
            config["services"] = services
        config.update(top)
        return config

    def start(self, config: dict[str, Any], env: dict[str, str] | None = None, wait: bool = True) -> PatrolProcess:
        process = PatrolProcess(self.tmp_path, config, self.marker, env)
        self.processes.append(process)
        return process.start(wait)

    def cleanup(self) -> None:
        for process in self.processes:
            process.cleanup()
        kill_marked(self.marker)


#: Debian's Chromium, as .ci/run installs it; the flags keep it off the network
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by playwright, one per test module.

    Skipped (with how to install it) when playwright or Chromium is missing, except on CI
    (``CI`` set), where a missing browser is an install step gone wrong: it fails.
    """
    missing = None
    try:
        from playwright import sync_api
    except ImportError:
        missing = "playwright is not installed (pip install playwright; never 'playwright install')"
    if missing is None and not os.access(CHROMIUM, os.X_OK):
        missing = f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)"
    if missing is not None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(missing)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def patrol(tmp_path: Path) -> Iterator[PatrolFactory]:
    """Start real ``patrol run`` processes; everything they started is killed after."""
    factory = PatrolFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()
