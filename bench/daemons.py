"""The three supervisors under test, configured for the same workload.

Each adapter writes its daemon's config for a :class:`~bench.workload.Workload` (N apps,
each the same child script with its app id as argument, restarted whenever it dies) and
says how to launch the daemon in the foreground and how to ask it for its status.
Settings differ from each daemon's defaults only where the workload needs it; every
deviation is listed in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import socket
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from .workload import CHILD_PATH, Workload

SUPERVISOR_VERSION = "4.3.0"
CIRCUS_VERSION = "0.19.0"
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
