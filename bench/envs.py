"""The programs under test: the peers from PyPI, and Patrol from this checkout.

Both go into throwaway virtual environments under ``bench/`` (gitignored), made with the
Python that runs the benchmark and reused while they hold the right versions, so the
benchmark needs nothing installed beforehand but Python itself. Patrol from the
development environment (``.venv``) is used when it exists, as it is what developers
measure; a clean clone gets a regular (non-editable) install.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .daemons import CIRCUS_VERSION, SUPERVISOR_VERSION

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS = {"supervisor": SUPERVISOR_VERSION, "circus": CIRCUS_VERSION}
#: the plugins the workloads use: pid-patrol, and the udp/http ping keepalives
PATROL_PLUGINS = ("keepalive_pid", "keepalive_udp", "keepalive_http")
Say = Callable[[str], None]  # where progress messages go


def _installed(python: Path, versions: dict[str, str]) -> bool:
    if not python.exists():
        return False
    probe = "import sys, importlib.metadata as m; print(' '.join(m.version(n) for n in sys.argv[1:]))"
    done = subprocess.run([str(python), "-c", probe, *versions], capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.split() == list(versions.values())


def _make_venv(path: Path, requirements: list[str], say: Say) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    say(f"creating {path} with {' '.join(requirements)}")
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *requirements], check=True)
    return path / "bin"


def peers_bin(fresh: bool, say: Say) -> Path:
    """``bin/`` of the environment holding supervisor and circus at the baseline's versions."""
    path = BENCH / ".venv-peers"
    if not fresh and _installed(path / "bin" / "python", PEERS):
        return path / "bin"
    return _make_venv(path, [f"{name}=={version}" for name, version in PEERS.items()], say)


def profiler_bin(fresh: bool, say: Say) -> Path:
    """``bin/`` of the environment holding py-spy (for bench/profile.py only)."""
    path = BENCH / ".venv-profile"
    if not fresh and (path / "bin" / "py-spy").exists():
        return path / "bin"
    return _make_venv(path, ["py-spy"], say)


def patrol_executable(explicit: str | None, fresh: bool, say: Say) -> str:
    """The ``patrol`` to measure: given, the development one, or a fresh install of this checkout."""
    if explicit:
        return explicit
    dev = REPO / ".venv" / "bin" / "patrol"
    if dev.exists():
        return str(dev)
    path = BENCH / ".venv-patrol"
    exe = path / "bin" / "patrol"
    if fresh or not exe.exists():
        _make_venv(path, [str(REPO), *(str(REPO / "plugins" / p) for p in PATROL_PLUGINS)], say)
    return str(exe)


def source_digest() -> str:
    """A digest of this checkout's Patrol sources (kernel and plugins).

    Taken before and after a run: in a tree where others are editing, a run whose
    sessions measured different code says so.
    """
    digest = hashlib.sha256()
    for path in sorted([*(REPO / "patrol").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]):
        if "tests" in path.parts:
            continue
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def patrol_label(executable: str) -> str:
    done = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True)
    return done.stdout.strip().replace("patrol", "Patrol", 1)
