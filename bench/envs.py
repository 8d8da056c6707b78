"""The programs under test: the peers from PyPI and npm, and Patrol from this checkout.

They go into throwaway environments under ``bench/`` (gitignored): virtual environments
made with the Python that runs the benchmark, and an npm prefix for pm2 (made with the
machine's ``npm``, run by its ``node``), reused while they hold the right versions, so
the benchmark needs nothing installed beforehand but Python itself (and node with npm
for pm2, which is skipped with the reason when they are missing). Patrol from the
development environment (``.venv``) is used when it exists, as it is what developers
measure; a clean clone gets a regular (non-editable) install.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .daemons import CIRCUS_VERSION, PM2_VERSION, SUPERVISOR_VERSION

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PEERS = {"supervisor": SUPERVISOR_VERSION, "circus": CIRCUS_VERSION}
#: pm2 supports node 18 and later (its package.json's "engines")
PM2_MIN_NODE = 18
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


class Unavailable(RuntimeError):
    """A peer cannot run on this machine; the message says why (the benchmark skips it)."""


def node_version() -> str:
    """``node --version`` of the machine's node ("v20.20.2"), or Unavailable."""
    node = shutil.which("node")
    if not node:
        raise Unavailable("node is not installed (pm2 needs node and npm)")
    done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    version = done.stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        raise Unavailable(f"cannot tell the node version from {version!r}") from None
    if major < PM2_MIN_NODE:
        raise Unavailable(f"node {version} is older than pm2 {PM2_VERSION} supports (>= {PM2_MIN_NODE})")
    return version


def pm2_prefix(fresh: bool, say: Say) -> Path:
    """The npm prefix holding pm2 at the pinned version (``node_modules/.bin/pm2``), or Unavailable.

    Installed with the machine's ``npm`` from its configured registry into
    ``bench/.npm-pm2``, with npm's cache inside the prefix, so nothing outside ``bench/``
    is written; ``--fresh`` re-creates it.
    """
    node_version()
    npm = shutil.which("npm")
    if not npm:
        raise Unavailable("npm is not installed (pm2 is installed from the npm registry)")
    prefix = BENCH / ".npm-pm2"
    manifest = prefix / "node_modules" / "pm2" / "package.json"
    try:
        installed = json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        installed = None
    if installed == PM2_VERSION and not fresh:
        return prefix
    shutil.rmtree(prefix, ignore_errors=True)
    prefix.mkdir(parents=True)
    say(f"installing pm2@{PM2_VERSION} into {prefix} with npm")
    done = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--cache", str(prefix / ".npm-cache"), "--no-audit", "--no-fund",
         "--no-save", "--no-package-lock", "--loglevel", "error", f"pm2@{PM2_VERSION}"],
        capture_output=True, text=True, check=False, timeout=600,
    )
    if done.returncode != 0 or not (prefix / "node_modules" / ".bin" / "pm2").exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Unavailable(f"npm install pm2@{PM2_VERSION} failed: {' / '.join(tail) or f'exit {done.returncode}'}")
    return prefix


def profiler_bin(fresh: bool, say: Say) -> Path:
    """``bin/`` of the environment holding py-spy (for bench/profile.py only)."""
    path = BENCH / ".venv-profile"
    if not fresh and (path / "bin" / "py-spy").exists():
        return path / "bin"
    return _make_venv(path, ["py-spy"], say)


def patrol_executable(explicit: str | None, fresh: bool, say: Say) -> str:
    """The ``patrol`` to measure: given, else this checkout installed as an operator installs it.

    Not the development environment: it holds the test tools too, and some are imported
    by Patrol's own libraries merely because they are there (structlog imports greenlet,
    which playwright brings, and with it libstdc++: 1.5 MB of RSS no operator has). The
    install is editable, so it always runs this checkout's sources; it is made once
    (``--fresh`` re-makes it).
    """
    if explicit:
        return explicit
    path = BENCH / ".venv-patrol"
    exe = path / "bin" / "patrol"
    wanted = [str(REPO), *(str(REPO / "plugins" / p) for p in PATROL_PLUGINS)]
    if fresh or not exe.exists() or not _editable(path) or not _has_dependencies(path):
        _make_venv(path, [arg for source in wanted for arg in ("-e", source)], say)
    _compile(path / "bin" / "python", [REPO / "patrol", REPO / "plugins"])
    return str(exe)


def _compile(python: Path, trees: list[Path]) -> None:
    """Byte-compile the checkout, as pip does when it installs a package: an editable
    install runs the sources, and with ``PYTHONDONTWRITEBYTECODE`` set (as in some CI
    and sandbox shells) every module changed since its last ``.pyc`` was compiled again
    at every start (27 modules, ~85 ms of each cold start, measured)."""
    subprocess.run([str(python), "-m", "compileall", "-q", *map(str, trees)], check=False,
                   stdout=subprocess.DEVNULL)


def _has_dependencies(path: Path) -> bool:
    """Does the environment hold every dependency the checkout declares now? An editable
    install follows the sources, not a dependency added later (httptools: without it
    Patrol falls back to h11 quietly, and the run would measure the old parser)."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11: take the environment as it is
        return True
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = [d.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
             for d in declared if "python_version < " not in d]
    probe = "import sys, importlib.metadata as m; [m.version(n) for n in sys.argv[1:]]"
    done = subprocess.run([str(path / "bin" / "python"), "-c", probe, *names], capture_output=True, check=False)
    return done.returncode == 0


def _editable(path: Path) -> bool:
    """Was the environment at ``path`` made by this version of :func:`patrol_executable`
    (editable installs that follow the checkout), not by an older one (a copy)?"""
    return any(path.glob("lib/python*/site-packages/*editable*patrol*"))


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
    first = (done.stdout.strip().splitlines() or ["patrol"])[0]  # later lines list the plugins
    return first.split(" (")[0].replace("patrol", "Patrol", 1)  # "(plugin API ...; Python ...)": see the machine line
