"""Benchmark Patrol against supervisor, circus and pm2: one command, one table.

    python bench/run.py --quick      # a few minutes
    python bench/run.py              # the full run (3 rounds, 30 s idle windows)

Installs supervisor and circus into a throwaway virtual environment (bench/.venv-peers)
and pm2 into a throwaway npm prefix (bench/.npm-pm2; skipped with the reason without
node and npm), runs each daemon on the same workload, interleaved round by round
(Patrol, supervisor, circus, pm2; then supervisor, circus, pm2, Patrol; ...), and prints
Markdown tables: the side-by-side comparison with medians, p10-p90 spreads and
peer/Patrol ratios, Patrol at scale, Patrol's ping throughput and knees, and the
issues' targets. Raw figures go to a JSON file. See docs/benchmarks.md for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"

from bench import envs, memory, procfs, report
from bench.daemons import PM2_VERSION, Circus, Daemon, Patrol, Pm2, Supervisor
from bench.pings import ping_session
from bench.sessions import BenchError, Settings, main_session, respawn_session, scale_session
from bench.workload import Workload, app_ids

DAEMONS = ("patrol", "supervisor", "circus", "pm2")
QUIET_TIMEOUT = 300.0
#: whole-machine busy share above which the figures are marked indicative
BUSY_WARNING = 0.25
QUICK = {"rounds": 1, "idle": 10.0, "respawn_samples": 10, "kill_jitter": 0.2, "status_queries": 5,
         "ping_duration": 2.0, "knee_duration": 2.0, "ping_capacity": False}
FULL = {"rounds": 3, "idle": 30.0, "respawn_samples": 100, "kill_jitter": 0.2, "status_queries": 20,
        "ping_duration": 10.0, "knee_duration": 5.0, "ping_capacity": True}
#: descriptors per app a daemon may hold (two pipes and two log files) plus headroom
FDS_PER_APP = 8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one round, 10 s idle windows, fewer samples (a few minutes)")
    p.add_argument("--n", type=int, default=500, help="apps in the main sessions (default 500)")
    p.add_argument("--respawn-n", type=int, default=100, help="apps in the respawn sessions (default 100)")
    p.add_argument("--scale-n", type=int, default=5000,
                   help="apps in Patrol's scale session (default 5000), compared with --n; 0 skips it")
    p.add_argument("--scale-peers", action="store_true",
                   help="run the peers at --scale-n too (off by default: at 5000 apps they take minutes each)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (quick 1, full 3)")
    p.add_argument("--idle", type=float, help="idle window in seconds (quick 10, full 30)")
    p.add_argument("--respawn-samples", type=int, help="children killed per respawn session (quick 20, full 100)")
    p.add_argument("--start-timeout", type=float, default=120.0,
                   help="seconds all N apps may take to start (default 120); at the scale N, a miss is reported")
    p.add_argument("--only", default=",".join(DAEMONS), help="daemons to run, comma-separated")
    p.add_argument("--no-pings", action="store_true", help="skip Patrol's ping throughput")
    p.add_argument("--pings-only", action="store_true",
                   help="only Patrol's ping throughput (and knees): no main, respawn, scale or memory sessions")
    p.add_argument("--udp-rate", type=float, default=10000, help="offered UDP pings/s (default 10000)")
    p.add_argument("--http-rate", type=float, default=4000, help="offered HTTP pings/s (default 4000)")
    p.add_argument("--no-knee", action="store_true", help="skip the search for the ping knees")
    p.add_argument("--knee-duration", type=float, help="seconds per knee step (quick 2, full 5)")
    p.add_argument("--ping-procs", type=int, default=2, help="load generator processes (default 2)")
    p.add_argument("--patrol", help="patrol executable (default: this clone installed editable into bench/.venv-patrol)")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="PCT",
                   help="before each session, wait (up to 5 min) until the machine is less than PCT%% busy")
    p.add_argument("--fresh", action="store_true", help="re-create the throwaway virtual environments")
    p.add_argument("--json", type=Path, help="where to write raw results (default bench/results/...)")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.only = [d for d in DAEMONS if d in args.only.split(",")]
    return args


def machine() -> dict[str, str]:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpus": str(os.cpu_count()), "model": model, "memory": f"{mem:.0f} GiB",
            "kernel": platform.release(), "python": platform.python_version()}


def raise_fd_limit(apps: int) -> int:
    """Give the daemons (which inherit the limit) descriptors for ``apps`` apps; the soft limit set.

    500 children with pipes and log files need more than the usual 1024, and 5,000 more
    than a typical hard limit of 20,000: as root the hard limit is raised too (up to the
    kernel's ``fs.nr_open``), otherwise the soft limit goes up to the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FDS_PER_APP * apps + 4096
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                want = min(want, int(f.read()))
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (OSError, ValueError):
            pass  # not root: the daemons get what the hard limit allows
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="patrol-bench-"))
        #: peers that could not run here, with the reason (reported, not fatal)
        self.skipped: dict[str, str] = {}
        self.node = ""
        self.pm2_prefix: Path | None = None
        if "pm2" in args.only:
            try:
                self.node = envs.node_version()
                self.pm2_prefix = envs.pm2_prefix(args.fresh, self.say)
            except (envs.Unavailable, subprocess.TimeoutExpired, OSError) as exc:
                self.skipped["pm2"] = str(exc)
                self.say(f"skipping pm2: {exc}")
                args.only = [d for d in args.only if d != "pm2"]
        self.patrol_exe = envs.patrol_executable(args.patrol, args.fresh, self.say) if "patrol" in args.only else ""
        python_peers = [d for d in args.only if d in ("supervisor", "circus")]
        self.peers_bin = envs.peers_bin(args.fresh, self.say) if python_peers else None
        self.labels = {"supervisor": Supervisor.label, "circus": Circus.label, "pm2": f"pm2 {PM2_VERSION}"}
        if self.patrol_exe:
            self.labels["patrol"] = envs.patrol_label(self.patrol_exe)
        self.settings = Settings(
            idle_seconds=args.idle, status_queries=args.status_queries, respawn_samples=args.respawn_samples,
            kill_jitter=args.kill_jitter, start_timeout=args.start_timeout,
            query_python=str(self.peers_bin / "python") if self.peers_bin else sys.executable,
        )

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {message}", file=sys.stderr, flush=True)

    def make(self, name: str, n: int, ping_apps: dict[str, str] | None = None) -> Daemon:
        work = Workload(self.root, name)
        apps = app_ids(n)
        if name == "patrol":
            return Patrol(work, apps, self.patrol_exe, self.labels["patrol"], ping_apps)
        if name == "pm2":
            assert self.pm2_prefix is not None
            return Pm2(work, apps, self.pm2_prefix, self.labels["pm2"])
        assert self.peers_bin is not None
        return (Supervisor if name == "supervisor" else Circus)(work, apps, self.peers_bin)

    def wait_quiet(self) -> None:
        """On a shared machine, start a session only when the others are (nearly) idle."""
        if not self.args.wait_quiet:
            return
        deadline = time.monotonic() + QUIET_TIMEOUT
        while (busy := procfs.busy_share(1.0) * 100) >= self.args.wait_quiet:
            if time.monotonic() > deadline:
                self.say(f"machine still {busy:.0f}% busy after {QUIET_TIMEOUT:.0f} s; measuring anyway")
                return
            self.say(f"machine {busy:.0f}% busy; waiting for it to drop below {self.args.wait_quiet:g}%")
            time.sleep(4)

    def session(self, name: str, n: int, kind: str, measure: Callable[[Daemon, Settings], dict[str, Any]]) -> dict[str, Any]:
        daemon = self.make(name, n)
        self.wait_quiet()
        self.say(f"{self.labels[name]}: {kind} session, N={n}")
        result = measure(daemon, self.settings)
        if result.get("failed"):
            self.say(f"{kind} session did not complete: {result['failed']}")
        if result.get("anomaly"):
            self.say(f"ANOMALY: {result['anomaly']}")  # the workload directory is kept to look at
        else:
            daemon.work.remove()  # also kept when the session failed
        return result

    def memory_session(self) -> dict[str, Any]:
        """Patrol's RSS at N and at 2N apps, each read :data:`bench.memory.SETTLE` seconds
        after the last start (as ``bench/memory.py``): issue 18's cost of one more app is
        (RSS at 1,000 - RSS at 500) / 500. Once, not per round: RSS is nearly deterministic."""
        sizes, rss = [self.args.n, 2 * self.args.n], []
        for n in sizes:
            daemon = self.make("patrol", n)
            assert isinstance(daemon, Patrol)
            self.wait_quiet()
            self.say(f"{self.labels['patrol']}: memory session, N={n}")
            try:
                rss.append(memory.measure(daemon, n, self.settings))
            finally:
                daemon.work.remove()
        return {"n": sizes, "rss_kib": rss, "settle_s": memory.SETTLE}

    def run(self) -> dict[str, Any]:
        a = self.args
        names = list(a.only)
        source = envs.source_digest()
        scaled = [d for d in names if d == "patrol" or a.scale_peers] if a.scale_n else []
        sessions: dict[str, dict[str, list[dict[str, Any]]]] = {
            key: {"main": [], "respawn": [], "pings": []} for key in [*names, *(f"{d}-scale" for d in scaled)]
        }
        for r in range(a.rounds):
            self.say(f"round {r + 1} of {a.rounds}")
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order if not a.pings_only else ():
                sessions[name]["main"].append(self.session(name, a.n, "main", main_session))
                sessions[name]["respawn"].append(self.session(name, a.respawn_n, "respawn", respawn_session))
            for name in [d for d in order if d in scaled and not a.pings_only]:
                # main and respawn figures from one session: starting N apps twice would double the time
                sessions[f"{name}-scale"]["main"].append(self.session(name, a.scale_n, "scale", scale_session))
            if "patrol" in names and not a.no_pings:
                self.wait_quiet()
                self.say(f"{self.labels['patrol']}: ping throughput" + ("" if a.no_knee else " and knees"))
                sessions["patrol"]["pings"].append(ping_session(
                    lambda apps: self.make("patrol", 0, apps), self.settings, duration=a.ping_duration,
                    procs=a.ping_procs, udp_rate=a.udp_rate, http_rate=a.http_rate, capacity=a.ping_capacity,
                    knee_duration=0 if a.no_knee else a.knee_duration))
        per_app = self.memory_session() if "patrol" in names and not a.pings_only else None
        try:
            self.root.rmdir()  # empty unless an anomaly's workload was kept in it
        except OSError:
            pass
        return {
            "machine": {**machine(), **({"node": self.node} if self.node else {})},
            "mode": "quick" if a.quick else "full", "rounds": a.rounds,
            "idle_seconds": a.idle, "kill_jitter": a.kill_jitter,
            "sizes": {"main": a.n, "respawn": a.respawn_n, "scale": a.scale_n},
            "daemons": names, "labels": self.labels, "skipped": self.skipped,
            "status_queries": {"patrol": Patrol.status_query, "supervisor": Supervisor.status_query,
                               "circus": Circus.status_query, "pm2": Pm2.status_query},
            "sessions": sessions, "memory": per_app, "seconds": time.monotonic() - self.t0,
            "patrol_source": [source, envs.source_digest()],
        }


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    busy = [s["machine_busy"] for d in results["sessions"].values() for s in d["main"] + d["respawn"]
            if "machine_busy" in s]
    parts = [
        (f"Machine: {m['cpus']} CPUs ({m['model']}), {m['memory']}, Linux {m['kernel']}, Python {m['python']}"
         + (f", node {m['node']}" if m.get("node") else "") + "; "
         f"{results['mode']} run, {results['rounds']} round(s), idle window {results['idle_seconds']:g} s, "
         f"took {results['seconds']:.0f} s; Patrol sources {results['patrol_source'][0]}."),
    ]
    if busy and max(busy) > BUSY_WARNING:
        parts.append(f"INDICATIVE ONLY: other work kept the machine up to {100 * max(busy):.0f} % busy during the "
                     "sessions (last row of the first table); absolute figures are pessimistic, ratios from the "
                     "same run are fairer.")
    parts += ["", report.comparison(results), "", *report.status_notes(results)]
    for name, reason in results.get("skipped", {}).items():
        parts.append(f"{name} skipped: {reason}.")
    anomalies = [s["anomaly"] for d in results["sessions"].values() for s in d["main"] if s.get("anomaly")]
    if anomalies:
        parts += ["", "ANOMALIES (graceful shutdown did not end cleanly):", *(f"- {a}" for a in anomalies)]
    before, after = results["patrol_source"]
    if before != after:
        parts += ["", (f"WARNING: Patrol's sources changed during the run ({before} -> {after}): "
                       "its sessions did not all measure the same code.")]
    if "patrol" in results["daemons"] and results["sessions"].get("patrol-scale", {}).get("main"):
        parts += ["", report.scale(results)]
        parts += [f"Scale session did not complete: {s['failed']}." for d, v in results["sessions"].items()
                  if d.endswith("-scale") for s in v["main"] if s.get("failed")]
        if any(key.endswith("-scale") and key != "patrol-scale" for key in results["sessions"]):
            parts += ["", report.comparison(results, "-scale")]
    if "patrol" in results["daemons"] and results["sessions"]["patrol"]["pings"]:
        parts += ["", report.pings(results)]
        knees = report.knees(results)
        if knees:
            parts += ["", knees]
    if "patrol" in results["daemons"]:
        parts += ["", report.targets(results)]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit(max(args.n, args.respawn_n, args.scale_n))
    procfs.become_subreaper()  # pm2's God daemon becomes ours once `pm2 start` exits: its exit status is read
    try:
        bench = Bench(args)
        results = bench.run()
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    path = args.json or envs.BENCH / "results" / f"{time.strftime('%Y%m%d-%H%M%S')}-{results['mode']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    print(render(results))
    print(f"\nraw results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
