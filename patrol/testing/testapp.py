#!/usr/bin/env python3
"""A managed test program speaking every keepalive protocol (the original's testapp).

Reads ``PATROL_ID`` and ``PATROL_KEEPALIVE`` (exits 1 if missing); writes a line to
stdout and stderr; keepalive 2 writes its pid to ``PATROL_PID`` (or ``testapp.pid``);
keepalive 3/4 ping ``PATROL_HTTP`` / ``PATROL_UDP`` (with ``PATROL_SECRET`` as the
secret when set, as the ``patrol ping`` client does). Signals: SIGHUP/SIGTERM exit 0,
SIGINT stops pinging, SIGUSR1 exits 10, SIGUSR2 exits 12.

Knobs for tests (environment):

``TESTAPP_LIFETIME``     seconds before it exits by itself (default 300)
``TESTAPP_PING_DELAY``   seconds before the first ping (default 2, as the original)
``TESTAPP_PING_EVERY``   seconds between pings (default 1 for HTTP, 0.5 for UDP)
``TESTAPP_TOGGLE``       a toggle number sent with every ping
``TESTAPP_EXIT``         exit at once with this code (a crash loop)
``TESTAPP_EXIT_IF``      only exit at once while this file exists
``TESTAPP_STARTLOG``     append ``<time.time()> <pid>`` to this file at start
``TESTAPP_DAEMONIZE``    1: double-fork, the daemon writes the pid file, the launcher exits 0
``TESTAPP_GRANDCHILD``   1: start a grandchild that ignores SIGTERM/SIGUSR1 and sleeps
``TESTAPP_CHILDREN``     start this many children that ignore SIGTERM/SIGUSR1/2/HUP
``TESTAPP_IGNORE``       comma list of signal names to ignore (e.g. ``SIGUSR1,SIGTERM``)
``TESTAPP_PRINT_EVERY``  print a numbered line every N seconds
``TESTAPP_FLOOD``        write numbered 100-byte lines (``line 000000001 xx..``) to stdout at this
                         many bytes per second, then print ``flood done N``
``TESTAPP_FLOOD_LINES``  how many lines to flood (default 0: no end)
``TESTAPP_PROGRESS``     after each write, the number of the last line written goes to this file
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def main() -> int:
    app_id = os.environ.get("PATROL_ID")
    keepalive = os.environ.get("PATROL_KEEPALIVE")
    if not app_id or not keepalive:
        print("testapp: PATROL_ID and PATROL_KEEPALIVE are required", file=sys.stderr)
        return 1
    if os.environ.get("TESTAPP_STARTLOG"):
        with open(os.environ["TESTAPP_STARTLOG"], "a") as f:
            f.write(f"{time.time()} {os.getpid()}\n")
    crash_flag = os.environ.get("TESTAPP_EXIT_IF")
    if "TESTAPP_EXIT" in os.environ and (not crash_flag or os.path.exists(crash_flag)):
        return int(os.environ["TESTAPP_EXIT"])
    if os.environ.get("TESTAPP_DAEMONIZE") == "1" and os.fork() > 0:
        return 0  # the launcher
    if os.environ.get("TESTAPP_DAEMONIZE") == "1":
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
    stop_pinging = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: os._exit(0))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: stop_pinging.set())
    signal.signal(signal.SIGUSR1, lambda *_: os._exit(10))
    signal.signal(signal.SIGUSR2, lambda *_: os._exit(12))
    for name in filter(None, os.environ.get("TESTAPP_IGNORE", "").split(",")):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    # "started" is printed once the signal handlers are in place: tests wait for it
    print(f"testapp {app_id} started, pid {os.getpid()}, keepalive {keepalive}", flush=True)
    print(f"testapp {app_id} stderr line", file=sys.stderr, flush=True)

    for _ in range(int(os.environ.get("TESTAPP_CHILDREN", "0"))):
        if os.fork() == 0:  # a worker that ignores the polite signals
            for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            time.sleep(env_float("TESTAPP_LIFETIME", 300))
            os._exit(0)
    if os.environ.get("TESTAPP_GRANDCHILD") == "1" and os.fork() == 0:
        for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        time.sleep(env_float("TESTAPP_LIFETIME", 300))
        os._exit(0)

    if keepalive == "2":
        path = os.environ.get("PATROL_PID") or "testapp.pid"
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    if keepalive in ("3", "4"):
        threading.Thread(target=ping_loop, args=(app_id, keepalive, stop_pinging), daemon=True).start()
    if env_float("TESTAPP_FLOOD", 0):
        flood(env_float("TESTAPP_FLOOD", 0), int(os.environ.get("TESTAPP_FLOOD_LINES", "0")),
              os.environ.get("TESTAPP_PROGRESS", ""))
    every = env_float("TESTAPP_PRINT_EVERY", 0)
    deadline = time.monotonic() + env_float("TESTAPP_LIFETIME", 300)
    n = 0
    while time.monotonic() < deadline:
        if every:
            n += 1
            print(f"line {n}", flush=True)
            time.sleep(every)
        else:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    return 0


FLOOD_LINE = 100


def flood_line(n: int) -> bytes:
    head = f"line {n:09d} "
    return (head + "x" * (FLOOD_LINE - 1 - len(head)) + "\n").encode()


def flood(rate: float, lines: int, progress: str) -> None:
    """Write numbered lines at ``rate`` bytes/s in small batches; a blocked write shows as
    the progress file standing still."""
    sys.stdout.flush()
    started = time.monotonic()
    n = 0
    while not lines or n < lines:
        due = int((time.monotonic() - started) * rate / FLOOD_LINE)
        due = min(due, n + 10_000, lines or due)
        if due <= n:
            time.sleep(0.005)
            continue
        data = b"".join(flood_line(i) for i in range(n + 1, due + 1))
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]
        n = due
        if progress:
            tmp = f"{progress}.tmp"
            with open(tmp, "w") as f:
                f.write(str(n))
            os.replace(tmp, progress)
    print(f"flood done {n}", flush=True)


def ping_loop(app_id: str, keepalive: str, stop: threading.Event) -> None:
    time.sleep(env_float("TESTAPP_PING_DELAY", 2))
    body: dict[str, object] = {"id": app_id, "group": "app", "ping": True, "pid": os.getpid()}
    if os.environ.get("TESTAPP_TOGGLE"):
        body["toggle"] = int(os.environ["TESTAPP_TOGGLE"])
    if os.environ.get("PATROL_SECRET"):
        body["secret"] = os.environ["PATROL_SECRET"]
    data = json.dumps(body).encode()
    if keepalive == "3":
        # imported here, not at the top: urllib.request doubles the start-up time of every
        # other test app (about 40 ms of a 70 ms start), and the suite starts thousands
        import urllib.request

        address = json.loads(os.environ["PATROL_HTTP"])[0]
        every = env_float("TESTAPP_PING_EVERY", 1)
        while not stop.is_set():
            try:
                req = urllib.request.Request(f"http://{address}/api/", data=data, method="POST")
                urllib.request.urlopen(req, timeout=5).read()
            except OSError as exc:
                print(f"ping failed: {exc}", file=sys.stderr, flush=True)
            stop.wait(every)
    else:
        host, _, port = json.loads(os.environ["PATROL_UDP"])[0].rpartition(":")
        every = env_float("TESTAPP_PING_EVERY", 0.5)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2)
        while not stop.is_set():
            sock.sendto(data, (host or "127.0.0.1", int(port)))
            try:
                sock.recv(4096)
            except OSError as exc:
                print(f"no ping reply: {exc}", file=sys.stderr, flush=True)
            stop.wait(every)


if __name__ == "__main__":
    sys.exit(main())
