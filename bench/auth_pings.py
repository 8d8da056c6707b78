"""What ``http.auth`` costs HTTP pings: pings per second from one client on loopback.

A real ``patrol run`` with 10 apps kept alive by HTTP pings, in three modes:

* ``open``: no http.auth (the default), pings as the original protocol sends them;
* ``secret``: http.auth on, each ping carries its app's secret and no token (the way
  apps ping when auth is on: the gate reads the body to let them in);
* ``token``: http.auth on, each ping also sends ``Authorization: Bearer``.

One client process keeps ``--connections`` keep-alive connections busy (closed loop: a
ping is sent when the previous answer on that connection arrived) for ``--seconds``
and counts the 200 answers; Patrol's CPU time per ping comes from ``/proc/PID/stat``
(less sensitive than the rate to other load on the machine). The modes run
interleaved ``--rounds`` times; the medians are printed.
Run: ``python bench/auth_pings.py [--seconds 5] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

APPS = 10
MODES = ("open", "secret", "token")
TOKEN = "bench-" + os.urandom(16).hex()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(workdir: Path, auth: bool) -> dict:
    apps = {f"app{i}": {"keepalive": 3, "name": f"App {i}", "binary": "/bin/sleep", "args": ["1000"],
                        "working-directory": str(workdir), "log-directory": "logs", "secret": f"secret-{i}"}
            for i in range(APPS)}
    http: dict = {"listen": f"127.0.0.1:{free_port()}"}
    if auth:
        (workdir / "token").write_text(TOKEN)
        (workdir / "token").chmod(0o600)
        http["auth"] = {"token-file": str(workdir / "token")}
    return {"apps": apps, "http": http, "udp": {"listen": f"127.0.0.1:{free_port()}"}, "ping-timeout": 180}


def request(app: int, token: bool, host: str) -> bytes:
    body = json.dumps({"id": f"app{app}", "group": "app", "ping": True, "pid": os.getpid(),
                       "secret": f"secret-{app}"}).encode()
    headers = ["POST /api/ HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
               f"Content-Length: {len(body)}"]
    if token:
        headers.append(f"Authorization: Bearer {TOKEN}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


async def connection(host: str, port: int, token: bool, until: float, counts: dict[int, int], first: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    requests = [request(i, token, f"{host}:{port}") for i in range(APPS)]
    n = first
    while time.monotonic() < until:
        writer.write(requests[n % APPS])
        n += 1
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        counts[status] = counts.get(status, 0) + 1
    writer.close()


async def load(address: str, token: bool, seconds: float, connections: int) -> tuple[dict[int, int], float]:
    host, _, port = address.rpartition(":")
    counts: dict[int, int] = {}
    start = time.monotonic()
    await asyncio.gather(*(connection(host, int(port), token, start + seconds, counts, k)
                           for k in range(connections)))
    return counts, time.monotonic() - start


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(mode: str, seconds: float, connections: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cfg = config(workdir, auth=mode != "open")
        path = workdir / "patrol.json"
        path.write_text(json.dumps(cfg))
        address = cfg["http"]["listen"]
        proc = subprocess.Popen([sys.executable, "-m", "patrol", "run", str(path), "--log-format", "json",
                                 "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    urllib.request.urlopen(f"http://{address}/login", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit(f"patrol did not start ({mode})")
                    time.sleep(0.05)
            cpu = cpu_seconds(proc.pid)
            counts, elapsed = asyncio.run(load(address, mode == "token", seconds, connections))
            cpu = cpu_seconds(proc.pid) - cpu
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    ok = counts.get(200, 0)
    return {"mode": mode, "pings_per_s": round(ok / elapsed), "cpu_us_per_ping": round(cpu / max(ok, 1) * 1e6),
            "answers": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            result = run(mode, args.seconds, args.connections)
            print(json.dumps(result), file=sys.stderr, flush=True)
            results[mode].append(result)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'mode':<8} {'pings/s':>8} {'CPU us/ping':>12}   (medians of {args.rounds})")
    for mode, runs in results.items():
        rate = statistics.median(r["pings_per_s"] for r in runs)
        cpu = statistics.median(r["cpu_us_per_ping"] for r in runs)
        print(f"{mode:<8} {rate:>8.0f} {cpu:>12.0f}")


if __name__ == "__main__":
    main()
