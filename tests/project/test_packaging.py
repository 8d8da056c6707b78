"""Packaging as users type it: the wheelhouse, installs from it with no index, kernel
ranges of plugins, ``patrol --version``, the state file across versions, the systemd unit.

One wheelhouse is built per session (``scripts/wheelhouse.py`` into a temp dir). Each
install goes into a fresh venv made without pip (fast) and is done by this venv's pip
through ``--python``, with pip's configuration switched off and ``--no-index``: what a
machine without any index sees. Only the wheelhouse build (dependency wheels) and
:func:`test_with_an_index_the_plugins_still_take_the_wheelhouse_kernel` use pip's
configured index.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tomllib
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

import patrol
from patrol.engine.state_file import SCHEMA_VERSION, StateFileTooNew, Store
from patrol.testing import UNITTEST_ENV, PatrolFactory, PatrolProcess, pid_alive, wait_for

ROOT = Path(__file__).resolve().parents[2]
KERNEL = patrol.__version__
#: The releases of the unrelated project that owns the name ``patrol`` on PyPI.
PYPI_UNRELATED = ("0.3", "0.3.1")
PLUGIN_DIRS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))


def project(directory: Path) -> dict[str, Any]:
    return tomllib.loads((directory / "pyproject.toml").read_text())["project"]


FIRST_PARTY = [project(d)["name"] for d in PLUGIN_DIRS]


# -- helpers ---------------------------------------------------------------------------


def offline_env(**extra: str) -> dict[str, str]:
    """The environment of a machine with no index: pip's settings off, no Python path,
    plugin loading as users get it (not the suite's strict mode)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")
           and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PATROL_STRICT_PLUGINS")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin"


def pip_install(bin_dir: Path, *args: str, report: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``pip install ARGS`` into the venv; what was installed, name -> url it came from.

    ``--no-compile``: no test looks at bytecode, and compiling every dependency took about
    40 % of each install (Python compiles what it imports anyway)."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--quiet", "--no-compile",
         "--report", str(report), *args],
        capture_output=True, text=True, env=env or offline_env(), timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {item["metadata"]["name"].lower(): item["download_info"]["url"]
            for item in json.loads(report.read_text())["install"]}


def run(bin_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bin_dir / "patrol"), *args], capture_output=True, text=True,
                          env=offline_env(**env), timeout=60)


def plugin_files(name: str, version: str, requires: list[str], source: str) -> dict[str, str]:
    """The files of an installed plugin distribution whose module is ``source``."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    return {
        f"{module}.py": source,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: patrol-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[patrol]\n{module.removeprefix('patrol_')} = {module}\n",
    }


def write_wheel(directory: Path, name: str, version: str, requires: list[str], source: str) -> Path:
    """A real wheel, as a build backend would write it (with its RECORD)."""
    files = plugin_files(name, version, requires, source)
    module = name.replace("-", "_")
    record_path = f"{module}-{version}.dist-info/RECORD"
    lines = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(text.encode())}")
    files[record_path] = "\n".join([*lines, f"{record_path},,"]) + "\n"
    wheel = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def keepalive_source(method: str, marker: Path) -> str:
    """A keepalive plugin that leaves ``marker`` behind as soon as it is imported."""
    return (
        f"open({str(marker)!r}, 'w').close()\n"
        "from patrol import KeepAlive, hookimpl\n"
        f"class Method(KeepAlive):\n    name = {method!r}\n"
        "@hookimpl\n"
        "def patrol_register_keepalives(register):\n    register(Method)\n"
    )


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """One wheelhouse for the whole run, also across pytest-xdist workers.

    Each worker is a session of its own: built per session, the build (the suite's
    longest setup) ran once in every worker that got a packaging test. The workers'
    temp dirs share a parent made for this run; the first worker builds there under a
    lock, the others wait for it and use the same files (no test writes to them).
    Outside xdist the parent is shared by every run, so the build stays in this one's.
    """
    if not hasattr(request.config, "workerinput"):
        return build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))
    shared = tmp_path_factory.getbasetemp().parent
    with open(shared / "wheelhouse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on a failed build
        out = shared / "wheelhouse"
        if not (out / "SHA256SUMS").exists():  # written last by scripts/wheelhouse.py
            shutil.rmtree(out, ignore_errors=True)  # what a failed build of another worker left
            out.mkdir()
            build_wheelhouse(out)
    return out


def build_wheelhouse(out: Path) -> Path:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "wheelhouse.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


# -- versions and ranges (static) ------------------------------------------------------


def test_every_first_party_package_has_the_kernels_version_and_a_range_that_excludes_pypis_patrol():
    assert re.fullmatch(r"\d+\.\d+\.\d+", KERNEL)
    assert isinstance(patrol.PLUGIN_API, tuple) and len(patrol.PLUGIN_API) == 2
    for directory in [*PLUGIN_DIRS, *sorted((ROOT / "examples" / "plugins").iterdir())]:
        meta = project(directory)
        if directory.parent.name == "plugins" and directory.parent.parent == ROOT:
            assert meta["version"] == KERNEL, f"{meta['name']}: one version for the kernel and its plugins"
        kernel = [Requirement(r) for r in meta["dependencies"] if Requirement(r).name == "patrol"]
        assert len(kernel) == 1, f"{meta['name']} must name the kernel range it is written for"
        spec = kernel[0].specifier
        assert spec.contains(KERNEL), f"{meta['name']}: {spec} does not hold this kernel {KERNEL}"
        for unrelated in PYPI_UNRELATED:  # 0.3.x is taken on PyPI: a kernel bump there needs a decision
            assert not spec.contains(unrelated), f"{meta['name']}: {spec} admits PyPI's unrelated patrol {unrelated}"


# -- the wheelhouse --------------------------------------------------------------------


def test_the_wheelhouse_holds_every_first_party_package_and_builds_reproducibly(wheelhouse, tmp_path):
    sums = dict(reversed(line.split("  ")) for line in (wheelhouse / "SHA256SUMS").read_text().splitlines())
    expected = {f"{n.replace('-', '_')}-{KERNEL}{suffix}" for n in ["patrol", *FIRST_PARTY]
                for suffix in ("-py3-none-any.whl", ".tar.gz")}
    assert set(sums) == expected
    for name, digest in sums.items():
        assert hashlib.sha256((wheelhouse / name).read_bytes()).hexdigest() == digest

    again = tmp_path / "again"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "wheelhouse.py"), "--out", str(again), "--no-deps"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (again / "SHA256SUMS").read_text() == (wheelhouse / "SHA256SUMS").read_text()
    assert sorted(p.name for p in again.iterdir()) == sorted([*expected, "SHA256SUMS"])  # no dependencies asked


def test_patrol_and_the_udp_plugin_from_the_wheelhouse_run_a_udp_app(wheelhouse, tmp_path, patrol: PatrolFactory):
    bin_dir = fresh_venv(tmp_path / "venv")
    installed = pip_install(bin_dir, "--no-index", "--find-links", str(wheelhouse), "patrol", "patrol-keepalive-udp",
                            report=tmp_path / "report.json")
    assert all(url.startswith(wheelhouse.as_uri() + "/") for url in installed.values()), installed
    assert installed["patrol"] == (wheelhouse / f"patrol-{KERNEL}-py3-none-any.whl").as_uri()
    assert {n for n in installed if n.startswith("patrol")} == {"patrol", "patrol-keepalive-udp"}

    listed = json.loads(run(bin_dir, "plugins", "--json").stdout)
    assert [p["name"] for p in listed["loaded"]] == ["patrol.http", "keepalive_udp"] and listed["failed"] == []
    version = run(bin_dir, "--version").stdout
    assert version.startswith(f"patrol {KERNEL} ") and f"patrol-keepalive-udp {KERNEL}" in version
    assert not any(other in version for other in FIRST_PARTY if other != "patrol-keepalive-udp")

    # patrol run from that venv: the app pings over UDP and stays one instance past ping-timeout
    config = patrol.config(apps={"u": patrol.app(4, env=["TESTAPP_PING_DELAY=0.1", "TESTAPP_PING_EVERY=0.3"])})
    p = PatrolProcess(patrol.tmp_path, config, patrol.marker, env=UNITTEST_ENV, command=[str(bin_dir / "patrol")])
    p.env = {**offline_env(), **{k: v for k, v in p.env.items() if k.startswith("PATROL")}}
    patrol.processes.append(p)
    p.start()
    ping_timeout = 3  # unit-test mode

    def entry_if(predicate: Any) -> Any:
        def check() -> Any:
            entry = p.app("u")
            return entry if predicate(entry) else None

        return check

    first = wait_for(entry_if(lambda e: e.get("lastseen")), 10, "the udp app's first ping")
    started = datetime.fromisoformat(first["started"]).timestamp()
    still = wait_for(entry_if(lambda e: datetime.fromisoformat(e["lastseen"]).timestamp() - started > ping_timeout + 0.5),
                     ping_timeout + 5, "the app pinging past ping-timeout")
    assert still["instance-id"] == first["instance-id"] and "history" not in still
    assert still["pid"] == first["pid"] and pid_alive(still["pid"])
    assert p.terminate() == 0


@pytest.mark.parametrize("plugin", FIRST_PARTY)
def test_each_plugin_alone_pulls_this_kernel_and_nothing_named_pyuv(wheelhouse, tmp_path, plugin):
    bin_dir = fresh_venv(tmp_path / "venv")
    installed = pip_install(bin_dir, "--no-index", "--find-links", str(wheelhouse), plugin,
                            report=tmp_path / "report.json")
    assert installed["patrol"] == (wheelhouse / f"patrol-{KERNEL}-py3-none-any.whl").as_uri()
    assert "pyuv" not in installed
    assert {n for n in installed if n.startswith("patrol")} == {"patrol", plugin}
    listed = json.loads(run(bin_dir, "plugins", "--json", PATROL_STRICT_PLUGINS="1").stdout)
    assert [p["dist"] for p in listed["loaded"]] == ["", plugin] and listed["failed"] == []


def test_with_an_index_the_plugins_still_take_the_wheelhouse_kernel(wheelhouse, tmp_path):
    """The trap itself: with the public index in reach (pip's own configuration), a
    plugin's dependency on ``patrol`` never resolves to PyPI's unrelated project."""
    bin_dir = fresh_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    chosen = pip_install(bin_dir, "--dry-run", "--find-links", str(wheelhouse), "patrol", "patrol-keepalive-udp",
                         report=tmp_path / "report.json", env=env)
    assert chosen["patrol"] == (wheelhouse / f"patrol-{KERNEL}-py3-none-any.whl").as_uri()
    assert "pyuv" not in chosen


# -- plugins written for another kernel ------------------------------------------------


def test_a_plugin_built_for_another_kernel_is_listed_failed_with_the_reason_and_never_imported(wheelhouse, tmp_path):
    bin_dir = fresh_venv(tmp_path / "venv")
    pip_install(bin_dir, "--no-index", "--find-links", str(wheelhouse), "patrol", report=tmp_path / "kernel.json")
    future_marker, current_marker = tmp_path / "future-imported", tmp_path / "current-imported"
    future = write_wheel(tmp_path, "patrol-future", "1.0.0", ["patrol>=0.3,<0.4"],
                         keepalive_source("future", future_marker))
    current = write_wheel(tmp_path, "patrol-current", "1.0.0", ["patrol>=0.2,<0.3"],
                          keepalive_source("current", current_marker))
    # pip itself refuses the future plugin beside this kernel; --no-deps is how it lands anyway
    pip_install(bin_dir, "--no-index", "--no-deps", str(future), str(current), report=tmp_path / "plugins.json")

    text = run(bin_dir, "plugins")
    assert text.returncode == 0, text.stderr
    line = next(line for line in text.stdout.splitlines() if line.startswith("future "))
    assert "FAILED: incompatible:" in line and "patrol<0.4,>=0.3" in line and f"this is patrol {KERNEL}" in line
    listed = json.loads(run(bin_dir, "plugins", "--json").stdout)
    assert "future" not in [p["name"] for p in listed["loaded"]] and "current" in [p["name"] for p in listed["loaded"]]
    assert [(f["name"], f["dist"], f["version"]) for f in listed["failed"]] == [("future", "patrol-future", "1.0.0")]
    assert not future_marker.exists(), "the incompatible plugin's code ran"
    assert current_marker.exists()  # the same kind of wheel, in range, is imported and loaded

    strict = run(bin_dir, "plugins", PATROL_STRICT_PLUGINS="1")
    assert strict.returncode == 1 and "incompatible" in strict.stderr and "patrol<0.4,>=0.3" in strict.stderr
    assert "not loaded: patrol-future 1.0.0 is written for patrol<0.4,>=0.3" in run(bin_dir, "--version").stdout


def dist_info_site(tmp_path: Path, requires: list[str], name: str = "patrol-ranged") -> Path:
    site = tmp_path / "site"
    for path, text in plugin_files(name, "0.9", requires, keepalive_source("ranged", tmp_path / "imported")).items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_text(text)
    return site


@pytest.mark.parametrize("requires, fits", [
    (["patrol>=0.2,<0.3"], True),
    (["patrol"], True),
    ([], True),  # names no kernel: not judged
    (["psutil>=5", "Patrol==0.1.*"], False),  # names are compared normalised
    (["patrol<0.2"], False),
    (["patrol>=9; python_version < '3'"], True),  # a marker that does not apply here
    (["patrol>=9; extra == 'extras'"], True),  # only with an extra
    (["patrol>=9; python_version >= '3'"], False),
    (["patrol >= = 2"], False),  # unreadable
])
def test_the_loader_judges_a_plugin_by_its_declared_kernel_range(tmp_path, requires, fits):
    site = dist_info_site(tmp_path, requires)
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("PATROL_STRICT_PLUGINS", None)
    out = subprocess.run([sys.executable, "-m", "patrol", "plugins", "--json"], capture_output=True, text=True,
                         env=env, timeout=60)
    listed = json.loads(out.stdout)
    failed = {f["name"]: f["error"] for f in listed["failed"]}
    assert ("ranged" in [p["name"] for p in listed["loaded"]]) is fits
    assert ("ranged" in failed) is not fits
    assert (tmp_path / "imported").exists() is fits
    if not fits:
        assert failed["ranged"].startswith("incompatible: patrol-ranged 0.9 ")


def test_a_development_kernel_runs_plugins_written_for_its_series(tmp_path):
    from importlib.metadata import PathDistribution

    from patrol.plugin.versions import kernel_misfit

    site = dist_info_site(tmp_path, ["patrol>=0.2,<0.3"])
    dist = PathDistribution(site / "patrol_ranged-0.9.dist-info")
    assert kernel_misfit(dist, "0.2.1.dev3") is None
    assert "made for patrol 0.3.x" in (kernel_misfit(dist, "0.3.0rc1") or "")


# -- patrol --version ------------------------------------------------------------------


def test_version_lists_the_kernel_and_every_plugin_without_loading_them_or_the_web_stack():
    code = (
        "import sys\n"
        "from patrol.cli import main\n"
        "try:\n    main(['--version'])\n"
        "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        "loaded = [m for m in ('starlette', 'uvicorn', 'pluggy', 'patrol_keepalive_pid', 'patrol.plugin.loader')"
        " if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    api = ".".join(map(str, patrol.PLUGIN_API))
    assert lines[0] == f"patrol {KERNEL} (plugin API {api}; Python {'.'.join(map(str, sys.version_info[:3]))})"
    for directory in PLUGIN_DIRS:
        entry = next(iter(project(directory)["entry-points"]["patrol"]))
        assert any(line.split() == [entry, project(directory)["name"], KERNEL] for line in lines), (entry, lines)


# -- the state file across versions ----------------------------------------------------


def test_a_state_file_of_0_1_is_read_and_marked_with_the_current_layout(tmp_path):
    path = str(tmp_path / "state.db")
    db = sqlite3.connect(path)  # what 0.1 wrote: the same tables, user_version 0
    db.executescript("CREATE TABLE item (grp TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL,"
                     " history_total INTEGER NOT NULL, PRIMARY KEY (grp, id));"
                     "CREATE TABLE history (grp TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,"
                     " record TEXT NOT NULL, PRIMARY KEY (grp, id, seq));")
    db.execute("INSERT INTO item VALUES ('app', 'a', ?, 0)", (json.dumps({"cas": 41, "disabled": True}),))
    db.commit()
    db.close()
    store = Store(path)
    try:
        assert store.items() == [("app", "a")]
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        store.close()


def test_a_state_file_from_a_newer_patrol_is_refused_and_left_unchanged(tmp_path, patrol: PatrolFactory):
    path = tmp_path / "state.db"
    Store(str(path)).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.execute("CREATE TABLE future (x)")
    db.commit()
    db.close()
    before = path.read_bytes()

    with pytest.raises(StateFileTooNew, match=r"layout version 2, written by a newer Patrol.*reads up to version 1"):
        Store(str(path))
    p = patrol.start(patrol.config(apps={"a": patrol.app(1)}, **{"state-file": str(path)}), wait=False)
    assert p.proc is not None and p.proc.wait(15) == 1
    assert "written by a newer Patrol" in p.log() and str(path) in p.log()
    assert path.read_bytes() == before
    assert not [f for f in os.listdir(tmp_path) if f.startswith("state.db-")]  # no journal left either


# -- the systemd unit ------------------------------------------------------------------


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)("systemd-analyze is missing (apt-get install systemd)")
    unit = (ROOT / "examples" / "systemd" / "patrol.service").read_text()
    documented = "ExecStart=/opt/patrol/bin/patrol run /etc/patrol/config.json"
    assert documented in unit.splitlines()
    assert documented.removeprefix("ExecStart=") in (ROOT / "docs" / "install.md").read_text()
    # verify also checks that ExecStart's program exists: point it at an installed patrol
    installed = Path(sys.executable).with_name("patrol")
    (tmp_path / "patrol.service").write_text(unit.replace("/opt/patrol/bin/patrol", str(installed)))
    out = subprocess.run([analyze, "verify", str(tmp_path / "patrol.service")], capture_output=True, text=True,
                         timeout=60)
    # warnings (an unknown key, a value it cannot parse) exit 0 too: accepted means silent
    assert out.returncode == 0 and out.stdout + out.stderr == "", out.stdout + out.stderr
    for setting in ("Type=exec", "ExecReload=/bin/kill -HUP $MAINPID", "KillMode=process", "Restart=on-failure"):
        assert setting in unit.splitlines()
    assert "NoNewPrivileges=yes" not in unit.splitlines() and "ProtectSystem=strict" not in unit.splitlines()
