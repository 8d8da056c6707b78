"""Where Patrol's RSS floor goes: one app's RSS taken apart, import by import.

    python bench/rss_floor.py                     # the table, for this checkout
    python bench/rss_floor.py --patrol .venv/bin/patrol --n 1000

Issue 18 asks for RSS <= 40 MB at N=500 apps, or, for a target out of reach, the measured
floor and why, with the profile that shows it. This is that profile. Patrol with one app
is already most of the figure at N=500, so the floor is what the interpreter and the
imports cost before Patrol supervises anything; this script shows it step by step:

1. the bare interpreter of Patrol's installation (the ``python`` next to ``patrol``);
2. plus each third-party package Patrol runs with (and the standard library it pulls in),
   then the rest of the standard library Patrol imports;
3. plus Patrol's own modules (the kernel and the plugins ``patrol run`` loads);
4. Patrol itself running the benchmark's one-app workload, settled (as bench/memory.py);
5. the same at N=500, the benchmark's figure.

Steps 1-3 each run in a fresh interpreter that imports everything up to that step, in the
order a running Patrol imported it, and reads its own VmRSS: each step is charged with
what it loads first. The module list is not guessed: it is ``sys.modules`` of a Patrol
running the one-app workload (read by a thread started before Patrol's first import,
which imports nothing itself). Step 4 is split into file-backed and anonymous RSS, and
its largest mappings are listed, so a reader sees how much is shared-library text (the
interpreter, libcrypto, ...) that no change to Patrol's Python can remove.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from bench import envs
from bench.daemons import Patrol
from bench.memory import SETTLE, measure
from bench.sessions import Run, Settings
from bench.workload import Workload, app_ids

#: run as ``python -c PROBE MODULE...``: imports each module not yet loaded, in order, then
#: prints its own VmRSS in KiB, the modules that failed to import, and all it holds. It uses
#: nothing but builtins, so the bare step (no module) is the interpreter and this probe alone.
PROBE = """
import sys
failed = []
for name in sys.argv[1:]:
    if name not in sys.modules:
        try:
            __import__(name)
        except Exception:
            failed.append(name)
rss = 0
with open("/proc/self/status") as f:
    for line in f:
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
print(rss)
print(*failed)
print(*sys.modules)
"""
#: run as ``python -c LISTER TRIGGER OUT run CONFIG``: Patrol, with a thread that writes
#: ``name<TAB>file`` of every module in ``sys.modules`` to OUT once the file TRIGGER exists.
#: Only builtins and the modules site already loaded (os, sys), so the list is Patrol's.
LISTER = """
import _thread, os, sys, time
trigger, out = sys.argv[1], sys.argv[2]
def dump():
    while not os.path.exists(trigger):
        time.sleep(0.05)
    with open(out + ".part", "w") as f:
        for name, module in list(sys.modules.items()):
            f.write(f"{name}\\t{getattr(module, '__file__', None) or ''}\\n")
    os.rename(out + ".part", out)
_thread.start_new_thread(dump, ())
sys.argv = ["patrol", *sys.argv[3:]]
from patrol.cli import main
sys.exit(main())
"""
#: the steps between the bare interpreter and Patrol's own modules: (label, module prefixes),
#: in the order Patrol needs them. ssl comes before asyncio, which imports it; a step's
#: modules are those of ``sys.modules`` under its prefixes (a package's submodules that
#: Patrol loads, not merely its ``__init__``), plus whatever standard library they pull in.
#: httptools and h11 come before uvicorn, which imports both whichever it then uses.
STEPS: list[tuple[str, tuple[str, ...]]] = [
    ("ssl (+ _ssl, libssl, libcrypto)", ("ssl", "_ssl")),
    ("asyncio", ("asyncio", "_asyncio")),
    ("importlib.metadata + pluggy", ("importlib.metadata", "pluggy")),
    ("structlog", ("structlog",)),
    ("sqlite3 (+ libsqlite3)", ("sqlite3", "_sqlite3")),
    ("starlette + anyio", ("starlette", "anyio", "sniffio", "multipart", "python_multipart")),
    ("httptools + h11 (uvicorn's HTTP parsers)", ("httptools", "h11")),
    ("uvicorn + click", ("uvicorn", "click")),
    ("jinja2 + markupsafe", ("jinja2", "markupsafe")),
    ("packaging", ("packaging",)),
    ("prometheus_client", ("prometheus_client",)),
]
OTHER_THIRD_PARTY = "other third-party"
STDLIB = "rest of the stdlib Patrol imports"
OWN = "Patrol's own modules"
TOP_MAPPINGS = 10
Say = Callable[[str], None]


@dataclass
class Module:
    name: str
    file: str


@dataclass
class Look:
    """What step 4's process holds: /proc/PID/status fields, smaps rows, thread count."""

    status: dict[str, int] = field(default_factory=dict)
    maps: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    threads: int = 0


def is_own(name: str) -> bool:
    """Patrol's kernel (``patrol.*``) or a first-party plugin (``patrol_*``)."""
    return name == "patrol" or name.startswith(("patrol.", "patrol_"))


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def running_modules(exe: str, settings: Settings, root: Path) -> list[Module]:
    """``sys.modules`` of Patrol settled on the one-app workload, in import order."""
    out = root / f"rss-floor-{os.getpid()}.modules"
    trigger = Path(str(out) + ".trigger")
    python = str(Path(exe).parent / "python")

    class Listed(Patrol):
        def argv(self) -> list[str]:
            return [python, "-c", LISTER, str(trigger), str(out), "run", str(self.config_path)]

    work = Workload(root, "rss-floor-modules")
    try:
        with Run(Listed(work, app_ids(1), exe, "patrol"), settings) as run:
            run.wait_started(1)
            time.sleep(SETTLE)
            trigger.touch()
            deadline = time.monotonic() + 30
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            run.shutdown()
        lines = out.read_text().splitlines()
    finally:
        work.remove()
        for path in (out, trigger, Path(str(out) + ".part")):
            path.unlink(missing_ok=True)
    modules = [Module(*line.split("\t", 1)) for line in lines]
    return [m for m in modules if m.name not in ("__main__", "__mp_main__")]


def stdlib_dirs(python: str) -> tuple[str, ...]:
    """The standard library's directories of that interpreter (its site-packages excluded)."""
    probe = "import sysconfig; print(sysconfig.get_path('stdlib')); print(sysconfig.get_path('platstdlib'))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    return tuple(os.path.realpath(p) + os.sep for p in done.stdout.split())


def group(modules: list[Module], stdlib: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """The import steps after the bare interpreter: (label, the modules it adds)."""
    steps: list[tuple[str, list[str]]] = [(label, []) for label, _ in STEPS]
    other: list[str] = []
    rest: list[str] = []
    own: list[str] = []
    for m in modules:
        if is_own(m.name):
            own.append(m.name)
            continue
        for (label, prefixes), (_, names) in zip(STEPS, steps):
            if under(m.name, prefixes):
                names.append(m.name)
                break
        else:
            path = os.path.realpath(m.file) if m.file else ""
            third_party = bool(path) and not path.startswith(stdlib) or "site-packages" in path
            (other if third_party else rest).append(m.name)
    steps = [step for step in steps if step[1]]
    if other:
        steps.append((OTHER_THIRD_PARTY, other))
    return [*steps, (STDLIB, rest), (OWN, own)]


@dataclass
class Probe:
    rss: int  # KiB
    failed: list[str]  # the modules that did not import alone
    loaded: set[str]  # all of sys.modules


def probe(python: str, names: list[str]) -> Probe:
    """A fresh interpreter after importing ``names``, from the root directory (so that no
    checkout on the current directory shadows the installation)."""
    done = subprocess.run([python, "-c", PROBE, *names], capture_output=True, text=True, check=True,
                          cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    rss, failed, loaded = done.stdout.split("\n")[:3]
    return Probe(int(rss), failed.split(), set(loaded.split()))


def tops(names: set[str], limit: int = 12) -> str:
    """The top-level packages among ``names``, most modules first: what a step loaded."""
    count: dict[str, int] = {}
    for name in names:
        top = name.split(".")[0]
        count[top] = count.get(top, 0) + 1
    ranked = sorted(count, key=lambda top: (-count[top], top))
    more = f" and {len(ranked) - limit} more" if len(ranked) > limit else ""
    return ", ".join(f"{top} ({count[top]})" if count[top] > 1 else top for top in ranked[:limit]) + more


def status_kb(pid: int, fields: tuple[str, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in fields:
                found[key] = int(value.split()[0])
    return found


def mappings(pid: int) -> list[tuple[str, int, int, int, int]]:
    """(mapping, count, Rss, private, shared) in KiB per path of /proc/PID/smaps, largest
    first; every anonymous mapping (arenas, thread stacks, the mmapped heap) is one row."""
    rows: dict[str, list[int]] = {}
    current: list[int] = [0, 0, 0, 0]
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if not head:
                continue
            if not head[0].endswith(":"):  # "start-end perms offset dev inode [path]": a new mapping
                name = " ".join(head[5:]) if len(head) > 5 else "[anonymous]"
                current = rows.setdefault(name, [0, 0, 0, 0])
                current[0] += 1
            elif head[0] == "Rss:":
                current[1] += int(head[1])
            elif head[0] in ("Private_Clean:", "Private_Dirty:"):
                current[2] += int(head[1])
            elif head[0] in ("Shared_Clean:", "Shared_Dirty:"):
                current[3] += int(head[1])
    ranked = sorted(rows.items(), key=lambda item: -item[1][1])
    return [(name, v[0], v[1], v[2], v[3]) for name, v in ranked]


def mib(kb: int) -> str:
    return f"{kb / 1024:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/rss_floor.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--patrol", help="patrol executable (default as bench/run.py)")
    p.add_argument("--n", type=int, default=500, help="the app count of the last row (the benchmark's N)")
    args = p.parse_args(argv)
    say: Say = lambda m: print(m, file=sys.stderr, flush=True)
    exe = os.path.abspath(envs.patrol_executable(args.patrol, False, say))  # the daemons run in their work directory
    label = envs.patrol_label(exe)
    python = str(Path(exe).parent / "python")
    root = Path(os.environ.get("TMPDIR", "/tmp"))
    settings = Settings(0, 0, 0, 0.2, sys.executable, start_timeout=300)

    began = time.monotonic()
    modules = running_modules(exe, settings, root)
    steps = group(modules, stdlib_dirs(python))
    rows: list[tuple[str, int, int]] = []  # (step, modules it loads, RSS in KiB)
    loads: list[tuple[str, set[str], list[str]]] = []  # (step, the modules it loaded first, its list)
    last = probe(python, [])
    rows.append(("bare interpreter (`python -c`, site imported)", len(last.loaded), last.rss))
    names: list[str] = []
    for step, added in steps:
        names += added
        now = probe(python, names)
        rows.append((f"+ {step}", len(now.loaded - last.loaded), now.rss))
        loads.append((step, now.loaded - last.loaded, added))
        last = now
    say(f"imports profiled ({len(modules)} modules) in {time.monotonic() - began:.1f} s")

    work = Workload(root, "rss-floor")
    look = Look()

    def inspect(pid: int) -> None:
        look.status = status_kb(pid, ("VmRSS", "RssAnon", "RssFile", "RssShmem"))
        look.maps = mappings(pid)
        look.threads = len(os.listdir(f"/proc/{pid}/task"))

    try:
        one = measure(Patrol(work, app_ids(1), exe, label), 1, settings, look=inspect)
    finally:
        work.remove()
    rows.append(("Patrol running 1 app, settled", 0, one))
    work = Workload(root, "rss-floor")
    try:
        many = measure(Patrol(work, app_ids(args.n), exe, label), args.n, settings)
    finally:
        work.remove()
    rows.append((f"Patrol running {args.n} apps, settled", 0, many))
    say(f"done in {time.monotonic() - began:.1f} s")

    own = [m for m in modules if is_own(m.name)]
    source = sum(os.path.getsize(m.file) for m in own if m.file.endswith(".py"))
    print(f"{label}: where one app's RSS goes (VmRSS; steps 1-3 each in a fresh `{python} -c`)\n")
    print("| step | modules loaded | RSS | delta |\n|---|---:|---:|---:|")
    previous = 0
    for step, count, kb in rows:
        delta = f"{(kb - previous) / 1024:+.1f} MiB" if previous else ""
        print(f"| {step} | {count or ''} | {mib(kb)} | {delta} |")
        previous = kb
    stack = rows[-4][2]  # every import but Patrol's own modules
    print(f"\nfloor: the interpreter and the stack Patrol runs on {mib(stack)}, Patrol's own modules "
          f"{(rows[-3][2] - stack) / 1024:+.1f} MiB, running and {args.n - 1} more apps "
          f"{(many - rows[-3][2]) / 1024:+.1f} MiB (MiB throughout: bench/report.py's \"MB\" are MiB too)")
    print("\nwhat each step loaded first (top-level packages, modules of each):\n")
    for step, loaded, added in loads:
        print(f"* {step}: {tops(loaded) if loaded else 'nothing new (already loaded: ' + ', '.join(added) + ')'}")
    if last.failed:
        print(f"\nnot importable alone (loaded by Patrol some other way): {' '.join(last.failed)}")
    print(f"\nmodules in a running Patrol: {len(modules)}; Patrol's own: {len(own)} "
          f"({', '.join(sorted({m.name.split('.')[0] for m in own}))}), "
          f"{source:,} bytes of source")
    status = look.status
    print(f"\nPatrol running 1 app ({look.threads} threads): VmRSS {mib(status['VmRSS'])} = "
          f"RssFile {mib(status['RssFile'])} (file-backed: executable, shared libraries, mapped files) + "
          f"RssAnon {mib(status['RssAnon'])} (heap, arenas, stacks) + RssShmem {mib(status.get('RssShmem', 0))}")
    maps = look.maps
    print(f"\ntop {TOP_MAPPINGS} mappings by RSS (/proc/PID/smaps, one row per file; shared = pages "
          "other processes map too)\n")
    print("| mapping | regions | RSS | private | shared |\n|---|---:|---:|---:|---:|")
    for name, count, rss, private, shared in maps[:TOP_MAPPINGS]:
        print(f"| {name} | {count} | {rss:,} kB | {private:,} kB | {shared:,} kB |")
    rest = maps[TOP_MAPPINGS:]
    print(f"| {len(rest)} others | {sum(r[1] for r in rest)} | {sum(r[2] for r in rest):,} kB | "
          f"{sum(r[3] for r in rest):,} kB | {sum(r[4] for r in rest):,} kB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
