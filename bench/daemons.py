"""The supervisors under test, configured for the same workload.

Each adapter writes its daemon's config for a :class:`~bench.workload.Workload` (N apps,
each the same child script with its app id as argument, restarted whenever it dies) and
says how to launch the daemon, how to stop it and how to ask it for its status.
Patrol, supervisor and circus run in the foreground; pm2 is launched the way its users
do (``pm2 start ecosystem.config.js`` spawns its God daemon, which outlives the command)
and stopped with ``pm2 kill``, as its own systemd unit does. Settings differ from each
daemon's defaults only where the workload needs it; every deviation is listed in
docs/benchmarks.md.
"""

from __future__ import annotations

import json
import socket
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from .workload import CHILD_PATH, Workload

SUPERVISOR_VERSION = "4.3.0"
CIRCUS_VERSION = "0.19.0"
PM2_VERSION = "7.0.4"
#: circus' check_delay as in the issue's baseline (its ini default is 5 s).
CIRCUS_CHECK_DELAY = 0.1


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon(ABC):
    """One supervisor: how to configure, launch and query it."""

    #: short name used on the command line and in results
    name: str
    #: what the table calls it
    label: str
    #: what its status query is (for the table's footnotes)
    status_query: str

    def __init__(self, work: Workload, apps: list[str]) -> None:
        self.work = work
        self.apps = apps
        self.config_path = self.write_config()

    @abstractmethod
    def write_config(self) -> Path: ...

    @abstractmethod
    def argv(self) -> list[str]:
        """Command line that runs the daemon in the foreground."""

    @abstractmethod
    def endpoint(self) -> str:
        """Where :mod:`bench.query` reaches it."""

    def env(self) -> dict[str, str]:
        """The environment the daemon (and any of its command-line clients) runs with."""
        return self.work.env()

    def locate(self, launched_pid: int, timeout: float) -> int:
        """The pid of the long-running daemon, given the pid of what :meth:`argv` launched.

        The same process for a daemon that runs in the foreground; a daemon that forks
        itself away (pm2) is found again here.
        """
        return launched_pid

    def stop_argv(self) -> list[str] | None:
        """The command that stops the daemon gracefully; None means SIGTERM to its pid."""
        return None

    def shutdown_timeout(self) -> float:
        """How long a graceful stop may take before the session counts as failed."""
        return 60.0

    def status_cli_argv(self) -> list[str] | None:
        """The status command a user would type, when the daemon's status is usually read that way."""
        return None


class Patrol(Daemon):
    name = "patrol"
    status_query = "HTTP GET /status/"

    def __init__(self, work: Workload, apps: list[str], executable: str, label: str,
                 ping_apps: dict[str, str] | None = None, wrapper: list[str] | None = None) -> None:
        self.executable = executable
        self.label = label
        self.wrapper = wrapper or []  # e.g. a profiler that runs Patrol as its child
        self.ping_apps = ping_apps or {}  # app id -> keepalive ("udp" or "http")
        self.http = f"127.0.0.1:{free_port()}"
        self.udp = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
        super().__init__(work, apps)

    def _app(self, app_id: str, keepalive: int | str) -> dict[str, Any]:
        return {
            "keepalive": keepalive,
            "name": app_id,
            "binary": self.work.script.name,
            "args": [app_id],
            "working-directory": str(self.work.dir),
            "log-directory": "logs",
            "pid-path": f"pids/{app_id}.pid",
            "env": [f"BENCH_MARKER={self.work.marker}", f"PATH={CHILD_PATH}"],
        }

    def write_config(self) -> Path:
        apps = {app: self._app(app, 1) for app in self.apps}  # 1 = pid-patrol
        apps.update({app: self._app(app, keepalive) for app, keepalive in self.ping_apps.items()})
        config = {"tick-every": 15, "http": {"listen": self.http}, "udp": {"listen": self.udp}, "apps": apps}
        path = self.work.dir / "patrol.json"
        path.write_text(json.dumps(config, indent=1))
        return path

    def argv(self) -> list[str]:
        return [*self.wrapper, self.executable, "run", str(self.config_path)]

    def endpoint(self) -> str:
        return self.http


class Supervisor(Daemon):
    name = "supervisor"
    label = f"supervisor {SUPERVISOR_VERSION}"
    status_query = "XML-RPC getAllProcessInfo"

    def __init__(self, work: Workload, apps: list[str], bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        super().__init__(work, apps)

    def write_config(self) -> Path:
        d = self.work.dir
        lines = [
            "[supervisord]",
            "nodaemon=true",
            f"logfile={d}/supervisord.log",
            f"pidfile={d}/supervisord.pid",
            f"childlogdir={d}/logs",
            # file descriptors closed in each child: enough for two pipes and two log
            # files per program, or descriptors of other programs leak into children
            f"minfds={max(1024, 8 * len(self.apps))}",
            "",
            "[inet_http_server]",
            f"port=127.0.0.1:{self.port}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
        ]
        for app in self.apps:
            lines += [
                f"[program:{app}]",
                f"command={self.work.script} {app}",
                f"directory={d}",
                "autorestart=true",
                f'environment=BENCH_MARKER="{self.work.marker}",PATH="{CHILD_PATH}"',
                "",
            ]
        path = d / "supervisord.conf"
        path.write_text("\n".join(lines))
        return path

    def argv(self) -> list[str]:
        return [str(self.bindir / "supervisord"), "-c", str(self.config_path)]

    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


class Circus(Daemon):
    name = "circus"
    label = f"circus {CIRCUS_VERSION}"
    status_query = "zmq list"

    def __init__(self, work: Workload, apps: list[str], bindir: Path) -> None:
        self.bindir = bindir
        self.ports = [free_port() for _ in range(2)]
        super().__init__(work, apps)

    def write_config(self) -> Path:
        d = self.work.dir
        control, pubsub = self.ports
        lines = [
            "[circus]",
            f"check_delay = {CIRCUS_CHECK_DELAY}",
            f"endpoint = tcp://127.0.0.1:{control}",
            f"pubsub_endpoint = tcp://127.0.0.1:{pubsub}",
            # no stats_endpoint: setting it starts the circusd-stats process
            "",
        ]
        for app in self.apps:
            lines += [
                f"[watcher:{app}]",
                f"cmd = {self.work.script}",
                f"args = {app}",
                f"working_dir = {d}",
                "numprocesses = 1",
                "",
            ]
        lines += ["[env:*]", f"BENCH_MARKER = {self.work.marker}", f"PATH = {CHILD_PATH}", ""]
        path = d / "circus.ini"
        path.write_text("\n".join(lines))
        return path

    def argv(self) -> list[str]:
        return [str(self.bindir / "circusd"), str(self.config_path)]

    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.ports[0]}"


class Pm2(Daemon):
    """pm2 from npm, with its own ``PM2_HOME`` in the workload directory (never ``~/.pm2``).

    The apps run in fork mode with ``interpreter: "none"``: pm2 spawns the child script
    itself, as the other daemons do, instead of wrapping it in a node process. The
    ``touch`` file pm2 writes after its first run is created beforehand, so the first
    ``pm2 start`` in a fresh ``PM2_HOME`` neither prints its banner nor phones pm2's
    version-check server; ``PM2_DISABLE_VERSION_CHECK`` turns off the daily re-check.
    """

    name = "pm2"
    status_query = "RPC getMonitorData (axon over rpc.sock, what pm2 jlist asks)"

    def __init__(self, work: Workload, apps: list[str], prefix: Path, label: str) -> None:
        self.prefix = prefix
        self.label = label
        self.home = work.dir / "pm2"
        super().__init__(work, apps)

    def write_config(self) -> Path:
        self.home.mkdir()
        (self.home / "touch").write_text("0")
        d = self.work.dir
        apps = [
            {
                "name": app,
                "script": str(self.work.script),
                "args": [app],
                "interpreter": "none",
                "cwd": str(d),
                "env": {"BENCH_MARKER": self.work.marker, "PATH": CHILD_PATH},
            }
            for app in self.apps
        ]
        path = d / "ecosystem.config.js"
        path.write_text("module.exports = " + json.dumps({"apps": apps}, indent=1) + ";\n")
        return path

    def cli(self, *args: str) -> list[str]:
        return [str(self.prefix / "node_modules" / ".bin" / "pm2"), *args, "--no-color"]

    def argv(self) -> list[str]:
        return self.cli("start", str(self.config_path))

    def env(self) -> dict[str, str]:
        return {**self.work.env(), "PM2_HOME": str(self.home), "PM2_DISABLE_VERSION_CHECK": "true"}

    def endpoint(self) -> str:
        return str(self.home / "rpc.sock")

    def locate(self, launched_pid: int, timeout: float) -> int:
        """The God daemon's pid, from the pid file it writes once it listens."""
        pid_file = self.home / "pm2.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                pid = 0
            if pid and _is_god(pid, self.home):
                return pid
            time.sleep(0.005)  # the daemon has not written its pid file yet
        raise TimeoutError(f"pm2 wrote no pid file of a live God daemon in {pid_file} within {timeout} s")

    def stop_argv(self) -> list[str]:
        return self.cli("kill")

    def shutdown_timeout(self) -> float:
        # pm2 stops two apps at a time and checks each one's death 100 ms after signalling it
        return max(60.0, 0.2 * len(self.apps))

    def status_cli_argv(self) -> list[str]:
        return self.cli("jlist")


def _is_god(pid: int, home: Path) -> bool:
    """Whether ``pid`` is the pm2 God daemon of ``home`` (its title names both)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return "God Daemon" in title and str(home) in title
