"""``patrol logs`` against a live ``patrol run``: the last lines, following across
restarts and rotation with every line once, prefixes, a token from a file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from patrol.testing import PatrolProcess, wait_for

NUMBERED = re.compile(r"line (\d{9}) x+$")
#: numbers its lines across instances (a counter file), and ends a line before it exits
COUNTER_APP = r'''
import os, signal, sys, time
path = os.environ["COUNTER"]
n = int(open(path).read() or 0) if os.path.exists(path) else 0
stop = False
def ask(*_):
    global stop
    stop = True
for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(sig, ask)
print("started", flush=True)
while not stop:
    n += 1
    sys.stdout.write(f"line {n:09d} " + "x" * 84 + "\n")
    sys.stdout.flush()
    with open(path + ".tmp", "w") as f:
        f.write(str(n))
    os.replace(path + ".tmp", path)
    time.sleep(0.002)
'''


def patrol_cli(*args: str, url: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_") and k != "NO_COLOR"}
    full_env.update({"PATROL_URL": f"http://{url}", **(env or {})})
    return subprocess.run([sys.executable, "-m", "patrol", *args], capture_output=True, text=True, env=full_env,
                          timeout=60)


class Follower:
    """``patrol logs -f ...`` in the background, its output collected line by line."""

    def __init__(self, *args: str, url: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
        env["PATROL_URL"] = f"http://{url}"
        self.proc = subprocess.Popen([sys.executable, "-m", "patrol", "logs", "-f", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)
        return self.proc.stderr.read() if self.proc.stderr else ""


def counter_app(patrol, name: str, **keys):
    script = patrol.tmp_path / "counter.py"
    script.write_text(COUNTER_APP)
    wrapper = patrol.tmp_path / "counter"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}"\n')
    wrapper.chmod(0o755)
    return patrol.app(1, binary="counter", env=[f"COUNTER={patrol.tmp_path / name}.count"], **keys)


def count(patrol, name: str) -> int:
    try:
        return int((patrol.tmp_path / f"{name}.count").read_text() or 0)
    except (OSError, ValueError):
        return 0


def test_logs_prints_exactly_the_last_n_lines_merged(patrol):
    app = patrol.app(1, env=["TESTAPP_FLOOD=100000", "TESTAPP_FLOOD_LINES=100"])
    p = patrol.start(patrol.config(apps={"app": app}))
    p.running_pid("app")
    wait_for(lambda: p.app_log_has("flood done 100"), 10, "the flood")
    everything = patrol_cli("logs", "app", "-n", "200", url=p.http).stdout.splitlines()
    # every line once; the stderr line sits where Patrol saw it arrive: the loop reads the two
    # pipes in turns, so on a busy machine any number of stdout lines may come before it
    assert len(everything) == 103 and everything.count("app stderr | testapp app stderr line") == 1
    stdout = [line.split(" | ", 1)[1] for line in everything if not line.startswith("app stderr")]
    assert [int(NUMBERED.search(line).group(1)) for line in stdout[1:-1]] == list(range(1, 101))
    assert stdout[-1] == "flood done 100"
    result = patrol_cli("logs", "app", "-n", "5", url=p.http)
    assert result.returncode == 0, result.stderr
    # exactly the last five of the merged stream, each saying whose it is, without colour
    assert result.stdout.splitlines() == everything[-5:] and "\x1b[" not in result.stdout
    assert all(line.startswith("app ") for line in everything)
    three = patrol_cli("logs", "app", "-n", "3", "--stderr", url=p.http)
    assert three.stdout == "testapp app stderr line\n"  # one stream: no prefix


def test_logs_f_follows_restarts_and_rotation_with_every_line_once(patrol):
    app = counter_app(patrol, "c", **{"log-max-bytes": 16 * 1024, "log-max-files": 50, "log-max-total-bytes": 0})
    p = patrol.start(patrol.config(apps={"c": app}))
    pid = p.running_pid("c")
    follower = Follower("c", "--stdout", "-n", "0", url=p.http)
    try:
        for how in ("restart", "kill"):
            wait_for(lambda: count(patrol, "c") > 0 and follower.lines, 15, "lines followed")
            seen = count(patrol, "c")
            wait_for(lambda: count(patrol, "c") > seen + 300, 15, "the app writing on")  # 30 KB: rotated
            if how == "restart":
                p.api(id="c", group="app", toggle=3)  # SIGUSR2: the app ends its line and exits
            else:
                os.kill(pid, signal.SIGTERM)  # killed from outside: it ends its line and exits; Patrol restarts it
            pid = p.running_pid("c", other_than=pid)
        seen = count(patrol, "c")
        wait_for(lambda: count(patrol, "c") > seen + 300, 30, "more lines after the second restart")
        p.api(id="c", group="app", toggle=2)  # stop it: the last number is final
        wait_for(lambda: p.app("c").get("state") == "disabled", 15, "the app stopped")
        last = count(patrol, "c")
        wait_for(lambda: any(line.startswith(f"line {last:09d}") for line in follower.lines), 20,
                 f"the follower reaching line {last}")
    finally:
        error = follower.stop()
    numbers = [int(m.group(1)) for m in map(NUMBERED.match, follower.lines) if m]
    first = numbers[0]
    assert numbers == list(range(first, last + 1)), f"gap or repeat (stderr: {error})"
    assert follower.lines.count("started") == 2  # both restarts were followed into the new instance
    logs = patrol.tmp_path / "logs"
    assert len(list(logs.rglob("*.stdout.log.*"))) >= 3  # the log was rotated on the way


def test_logs_f_of_every_app_prefixes_ids_with_a_token_from_a_file(patrol, tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("s3cr3t-token-for-the-logs\n")
    token.chmod(0o600)
    config = patrol.config(apps={"alpha": patrol.app(1, env=["TESTAPP_PRINT_EVERY=0.05"]),
                                 "beta": patrol.app(1, env=["TESTAPP_PRINT_EVERY=0.05"],
                                                    **{"log-directory": "logs-b"})})
    config["http"]["auth"] = {"token-file": str(token)}
    p: PatrolProcess = patrol.start(config)
    p.headers = {"Authorization": "Bearer s3cr3t-token-for-the-logs"}
    p.running_pid("alpha")
    p.running_pid("beta")
    refused = patrol_cli("logs", "-n", "1", url=p.http)
    assert refused.returncode == 1 and "needs its token" in refused.stderr
    follower = Follower("--token-file", str(token), "-n", "1", url=p.http)
    try:
        def both() -> bool:
            ids = {line.split(" ", 1)[0] for line in follower.lines if re.search(r"\| line \d+$", line)}
            return ids == {"alpha", "beta"}

        wait_for(both, 20, "numbered lines of both apps, prefixed")
    finally:
        follower.stop()
    assert all(re.match(r"(alpha|beta)( stderr)?\s+\| ", line) for line in follower.lines), follower.lines[:5]
    # the reader goes away: the follower ends (no hang), quietly (no traceback)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATROL_")}
    env["PATROL_URL"] = f"http://{p.http}"
    piped = subprocess.run(f'"{sys.executable}" -m patrol logs -f --token-file "{token}" alpha | head -n 3; '
                           'echo "status ${PIPESTATUS[0]}" >&2', shell=True, executable="/bin/bash",
                           capture_output=True, text=True, env=env, timeout=30)
    assert len(piped.stdout.splitlines()) == 3 and piped.stderr == "status 141\n", piped.stderr


def test_logs_since_reads_from_the_instance_running_then_across_restarts(patrol):
    p = patrol.start(patrol.config(apps={"app": patrol.app(1)}))
    first = p.running_pid("app", ready=True)
    p.api(id="app", group="app", toggle=3)
    second = p.running_pid("app", other_than=first, ready=True)
    result = patrol_cli("logs", "app", "--stdout", "--since", "1h", url=p.http)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if "started" in line] == [
        f"testapp app started, pid {first}, keepalive 1", f"testapp app started, pid {second}, keepalive 1"]
    now = patrol_cli("logs", "app", "--stdout", "-n", "1", url=p.http)
    assert now.stdout == f"testapp app started, pid {second}, keepalive 1\n"  # the current instance only
    wrong = patrol_cli("logs", "app", "--since", "yesterday-ish", url=p.http)
    assert wrong.returncode == 2 and "must be like 10m, 2h, 1d" in wrong.stderr
    missing = patrol_cli("logs", "nope", url=p.http)
    assert missing.returncode == 1 and "unknown app: nope" in missing.stderr
