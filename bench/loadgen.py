"""Ping load from another process: UDP datagrams or HTTP requests at a set rate.

Run by the benchmark, several at once (standard library only)::

    python loadgen.py udp  HOST:PORT RATE DURATION START_AT IDS
    python loadgen.py http HOST:PORT RATE DURATION START_AT IDS CONNECTIONS

RATE is pings per second (open loop: a ping is sent when it is due, whether or not the
earlier ones were answered, so a slow Patrol cannot slow the load down). RATE 0 means
"as fast as Patrol answers" (closed loop), which measures capacity. START_AT is a wall
time, so that all generators start together. IDS is a comma-separated list of app ids
to ping in turn. Prints one JSON object: sent, answered, failed, and latencies.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import sys
import time

DRAIN = 2.0  # seconds to wait for the last answers after the last ping
UDP_WINDOW = 32  # pings in flight per generator in closed-loop mode
PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))


def ping(app: str) -> bytes:
    """A ping as the app would send it: with its pid (this generator's)."""
    return json.dumps({"id": app, "group": "app", "ping": True, "pid": os.getpid()}, separators=(",", ":")).encode()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    return {name: values[min(len(values) - 1, int(q * len(values)))] for name, q in PERCENTILES} | {"max": values[-1]}


def wait_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        time.sleep(delay)


# -- UDP ---------------------------------------------------------------------------------


def udp(target: str, rate: float, duration: float, start_at: float, ids: list[str]) -> dict[str, object]:
    host, _, port = target.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    messages = [ping(app) for app in ids]
    sent_at: list[float] = []
    answered_at: list[float] = []
    errors = given_up = 0
    wait_until(start_at)
    t0 = time.monotonic()
    end = t0 + duration
    total = int(rate * duration) if rate else None

    def receive() -> None:
        nonlocal errors
        while True:
            try:
                sock.recv(65536)
            except BlockingIOError:
                return
            except ConnectionRefusedError:  # ICMP port unreachable: nobody listens
                errors += 1
                continue
            answered_at.append(time.monotonic())

    while True:
        now = time.monotonic()
        if total is not None:
            if len(sent_at) >= total:
                break
            due = min(total, int((now - t0) * rate) + 1)
        else:
            if now >= end:
                break
            in_flight = len(sent_at) - len(answered_at) - given_up
            if in_flight > 0 and now - (answered_at[-1] if answered_at else t0) > 0.2:
                given_up += in_flight  # lost: stop waiting for them, or the window stalls
            due = len(answered_at) + given_up + UDP_WINDOW
        while len(sent_at) < due:
            try:
                sock.send(messages[len(sent_at) % len(messages)])
            except (BlockingIOError, ConnectionRefusedError):
                errors += 1
                break
            sent_at.append(time.monotonic())
        receive()
        if total is not None:
            timeout = max(0.0, t0 + len(sent_at) / rate - time.monotonic())
        else:
            timeout = 0.05
        select.select([sock], [], [], timeout)
    deadline = time.monotonic() + DRAIN
    while len(answered_at) < len(sent_at) and time.monotonic() < deadline:
        select.select([sock], [], [], 0.05)
        receive()
    # until the last answer: answers that queued up in Patrol's socket buffer and came
    # after the last ping do not count as if they had come within the sending time
    elapsed = (max(sent_at[-1], answered_at[-1] if answered_at else 0.0) - sent_at[0]) if len(sent_at) > 1 else 0.0
    result: dict[str, object] = {
        "sent": len(sent_at),
        "answered": len(answered_at),
        "failed": len(sent_at) - len(answered_at),
        "errors": errors,
        "elapsed": elapsed,
    }
    if len(answered_at) == len(sent_at):
        # datagrams on loopback to one socket are answered in order: the k-th answer
        # belongs to the k-th ping, so its latency is known exactly
        result["latency"] = percentiles([a - s for s, a in zip(sent_at, answered_at)])
    return result


# -- HTTP --------------------------------------------------------------------------------


async def _http(target: str, rate: float, duration: float, start_at: float, ids: list[str],
                connections: int) -> dict[str, object]:
    host, _, port = target.rpartition(":")
    bodies = [ping(app) for app in ids]
    requests = [
        b"POST /api/ HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (target.encode(), len(body), body)
        for body in bodies
    ]
    total = int(rate * duration) if rate else None
    counter = 0
    ok = failed = 0
    latencies: list[float] = []  # from when the ping was due (includes queueing)
    service: list[float] = []  # from when it was sent
    wait_until(start_at)
    t0 = time.monotonic()
    end = t0 + duration
    last_done = t0

    async def worker() -> None:
        nonlocal counter, ok, failed, last_done
        reader = writer = None
        while True:
            k = counter
            if total is not None and k >= total:
                break
            if time.monotonic() >= (end if total is None else end + DRAIN):
                break  # open loop: what is still due by now counts as lost
            counter += 1
            due = t0 + k / rate if rate else time.monotonic()
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                sent = time.monotonic()
                writer.write(requests[k % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")  # type: ignore[union-attr]
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)  # type: ignore[union-attr]
            except (OSError, asyncio.IncompleteReadError, ValueError):
                failed += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            done = last_done = time.monotonic()
            if status == 200:
                ok += 1
                latencies.append(done - due)
                service.append(done - sent)
            else:
                failed += 1
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    unsent = total - counter if total is not None else 0
    return {
        "sent": ok + failed + unsent,
        "answered": ok,
        "failed": failed + unsent,
        "unsent": unsent,
        "elapsed": last_done - t0,
        "latency": percentiles(latencies),
        "service": percentiles(service),
    }


def main(argv: list[str]) -> int:
    kind, target, rate, duration, start_at, ids, *rest = argv
    app_ids = ids.split(",")
    if kind == "udp":
        result = udp(target, float(rate), float(duration), float(start_at), app_ids)
    elif kind == "http":
        result = asyncio.run(_http(target, float(rate), float(duration), float(start_at), app_ids, int(rest[0])))
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
