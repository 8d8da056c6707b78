#!/usr/bin/env python3
"""Build the wheelhouse: everything ``pip install --no-index --find-links DIR`` needs.

    python3 scripts/wheelhouse.py [--out dist] [--no-deps] [--clean]

puts into ``--out`` (default ``dist/``) a wheel and an sdist of the kernel (``patrol``)
and of every first-party plugin (``plugins/*``), plus wheels of their third-party
dependencies, so that on the target machine

    pip install --no-index --find-links dist patrol patrol-keepalive-udp

installs exactly those packages and never asks an index. The public index must stay out
of it: the name ``patrol`` there belongs to an unrelated project.

Reproducible: the build backend is pinned (``scripts/build-requirements.txt``) and
installed apart from the caller's environment; ``SOURCE_DATE_EPOCH`` (default: the time
of the last commit) fixes every timestamp in the archives; each wheel is built from the
sdist just made, which proves the sdist complete. Building the same tree twice gives
byte-identical files; ``SHA256SUMS`` lists the first-party ones. (Untracked files that
.gitignore does not exclude go into the sdists: build from a clean checkout to publish.)

Dependency wheels are what pip resolves for *this* Python and platform, through pip's own
configuration (index, mirror, ``find-links``): run this with the Python version that will
run Patrol. ``--no-deps`` builds only Patrol's own packages (no network needed beyond the
build backend).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_REQUIREMENTS = Path(__file__).with_name("build-requirements.txt")
#: the earliest time a zip file can record; used when neither env nor git gives one
FALLBACK_EPOCH = "315532800"

#: Runs the project's PEP 517 hooks in a fresh interpreter that sees only the standard
#: library and the pinned backend (-I -S: no site-packages, no PYTHON* variables).
BUILD = r"""
import importlib, os, sys, tarfile, tomllib
backend_dir, project, sdist_dir, wheel_dir, unpack_dir = sys.argv[1:6]
sys.path.insert(0, backend_dir)
with open(os.path.join(project, "pyproject.toml"), "rb") as f:
    hooks = importlib.import_module(tomllib.load(f)["build-system"]["build-backend"])
os.chdir(project)
sdist = hooks.build_sdist(sdist_dir)
with tarfile.open(os.path.join(sdist_dir, sdist)) as tar:
    top = tar.getnames()[0].split("/")[0]
    if hasattr(tarfile, "data_filter"):
        tar.extractall(unpack_dir, filter="data")
    else:  # a Python without PEP 706; the archive is the one just built
        tar.extractall(unpack_dir)
os.chdir(os.path.join(unpack_dir, top))
print(sdist, hooks.build_wheel(wheel_dir))
"""


def projects() -> list[Path]:
    """The kernel first, then every first-party plugin (a new one is found by its folder)."""
    return [ROOT, *sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))]


def source_date_epoch() -> str:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    try:
        found = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        found = ""
    return found if found.isdigit() else FALLBACK_EPOCH


def pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def install_backend(target: Path) -> None:
    subprocess.run(pip("install", "--quiet", "--no-compile", "--target", str(target),
                       "-r", str(BUILD_REQUIREMENTS)), check=True)


def build_project(project: Path, backend: Path, work: Path, out: Path, epoch: str) -> list[Path]:
    """sdist from the tree, wheel from the sdist; both into ``out``."""
    unpack = work / f"src-{project.name}"
    unpack.mkdir()
    env = {**os.environ, "SOURCE_DATE_EPOCH": epoch}
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", BUILD, str(backend), str(project), str(out), str(out), str(unpack)],
        env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"wheelhouse: building {project} failed:\n{done.stdout}{done.stderr}")
    sdist, wheel = done.stdout.split()[-2:]
    return [out / sdist, out / wheel]


def add_dependencies(wheels: list[Path], out: Path) -> None:
    """Wheels of every third-party dependency, resolved against the wheels just built.

    The built wheels are named by path, so pip takes ``patrol`` from them and never from
    an index; everything else comes through pip's configured index or mirror (a
    dependency published only as an sdist is built into a wheel).
    """
    subprocess.run(pip("wheel", "--quiet", "--wheel-dir", str(out), *map(str, wheels)), check=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="the wheelhouse directory (default: dist)")
    parser.add_argument("--no-deps", action="store_true", help="only Patrol's own packages, no dependency wheels")
    parser.add_argument("--clean", action="store_true", help="remove *.whl and *.tar.gz from --out first")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("pip") is None:
        return rerun_in_venv(argv if argv is not None else sys.argv[1:])

    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.clean:
        for old in [*out.glob("*.whl"), *out.glob("*.tar.gz")]:
            old.unlink()
    epoch = source_date_epoch()
    with tempfile.TemporaryDirectory(prefix="patrol-wheelhouse-") as tmp:
        work = Path(tmp)
        install_backend(work / "backend")
        built = work / "built"
        built.mkdir()
        ours: list[Path] = []
        for project in projects():
            ours += build_project(project, work / "backend", work, built, epoch)
        for path in ours:
            shutil.copy2(path, out / path.name)
    ours = [out / p.name for p in ours]
    if not args.no_deps:
        add_dependencies([p for p in ours if p.suffix == ".whl"], out)
    sums = "".join(f"{sha256(p)}  {p.name}\n" for p in sorted(ours))
    (out / "SHA256SUMS").write_text(sums)
    print(sums, end="")
    print(f"wheelhouse: {out} (SOURCE_DATE_EPOCH={epoch}); install with:\n"
          f"  pip install --no-index --find-links {out} patrol patrol-keepalive-pid ...")
    return 0


def rerun_in_venv(argv: list[str]) -> int:
    """This Python has no pip (a bare Debian python3): run again in a venv that has it."""
    with tempfile.TemporaryDirectory(prefix="patrol-wheelhouse-venv-") as tmp:
        venv.create(tmp, with_pip=True)
        return subprocess.run([str(Path(tmp, "bin", "python")), __file__, *argv], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
