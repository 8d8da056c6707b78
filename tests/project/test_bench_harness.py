"""Logic of the benchmark harness (bench/): pm2's wire protocol, the knee search, the scale rules.

No timing is asserted here (benchmarks are not tests); these check that the harness
reads pm2's replies and judges its figures correctly, on real sockets where there are any.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import pings, query, report  # noqa: E402


def _processes(statuses: list[str]) -> list[dict[str, object]]:
    return [{"pid": 100 + i, "name": f"a{i}", "pm2_env": {"status": status}} for i, status in enumerate(statuses)]


def _serve_one(server: socket.socket, reply: Callable[[Any], Any], chunk: int) -> threading.Thread:
    """Answer one request on ``server`` as pm2's God daemon does, writing ``chunk`` bytes at a time."""

    def run() -> None:
        conn, _ = server.accept()
        conn.settimeout(5.0)
        with conn:
            request = query.amp_read(conn)
            call, call_id = (query.axon_unpack(a) for a in query.amp_decode(request))
            frame = query.amp_encode([b"j:" + json.dumps(reply(call)).encode(), b"s:" + call_id.encode()])
            for i in range(0, len(frame), chunk):
                conn.sendall(frame[i : i + chunk])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def rpc_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(query, "TIMEOUT", 5.0)  # a client that waits for more than was sent fails fast
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.settimeout(5.0)
    path = tmp_path / "rpc.sock"
    server.bind(str(path))
    server.listen(1)
    yield server, str(path)
    server.close()


def test_pm2_status_call_is_read_whole_across_partial_writes(rpc_socket) -> None:
    server, path = rpc_socket
    seen: list[dict[str, object]] = []

    def reply(call: dict[str, object]) -> dict[str, object]:
        seen.append(call)
        return {"args": [_processes(["online", "stopped", "online", "errored"])]}

    thread = _serve_one(server, reply, chunk=3)  # a frame cut inside its header and its lengths
    raw = query.pm2_raw(path)
    thread.join(5)
    assert seen == [{"type": "call", "method": "getMonitorData", "args": [{}]}]
    assert [p["name"] for p in query.pm2_processes(raw)] == ["a0", "a1", "a2", "a3"]
    assert query.pm2_running(raw) == 2


def test_pm2_error_reply_is_an_error_not_an_empty_list(rpc_socket) -> None:
    server, path = rpc_socket
    thread = _serve_one(server, lambda call: {"error": "no such method"}, chunk=1 << 16)
    raw = query.pm2_raw(path)
    thread.join(5)
    with pytest.raises(RuntimeError, match="no such method"):
        query.pm2_running(raw)


def test_pm2_reply_cut_short_is_reported() -> None:
    frame = query.amp_encode([b"j:" + json.dumps({"args": [[]]}).encode(), b"s:x:0"])
    with pytest.raises(ValueError, match="truncated"):
        query.amp_decode(frame[:-2])
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.settimeout(5.0)
        theirs.sendall(frame[:7])
        theirs.shutdown(socket.SHUT_WR)
        with pytest.raises(ConnectionError):
            query.amp_read(ours)


def _capacity(limit: float, calls: list[float]):
    """A stand-in for one open-loop load against a Patrol that answers at most ``limit`` pings/s."""

    def measure(rate: float) -> dict[str, float]:
        calls.append(rate)
        answered = min(rate, limit)
        return {"target_rate": rate, "rate": answered, "lost": int((rate - answered) * 2)}

    return measure


@pytest.mark.parametrize("limit", [850.0, 3300.0, 7000.0, 9999.0, 10500.0, 30000.0])
def test_knee_brackets_the_rate_where_loss_starts(limit: float) -> None:
    calls: list[float] = []
    measure = _capacity(limit, calls)
    steps = pings.find_knee(measure, measure(10000.0))
    knee = pings.knee_of(steps)
    good, bad = knee["kept_up"], knee["lost_from"]
    assert good is None or good <= limit
    assert bad is None or bad > limit
    ladder = {10000.0, *(pings._round_rate(10000.0 * f) for f in pings.KNEE_UP + pings.KNEE_DOWN)}
    bisections = [rate for rate in calls if rate not in ladder]
    assert len(bisections) <= pings.KNEE_BISECTIONS
    if good is not None and bad is not None:  # narrowed down to the resolution, or out of bisections
        assert bad <= good * pings.KNEE_RESOLUTION or len(bisections) == pings.KNEE_BISECTIONS
    assert steps[0]["target_rate"] == 10000.0


def test_knee_keeps_going_up_while_kept_up_and_down_until_kept_up() -> None:
    up: list[float] = []
    pings.find_knee(_capacity(1e9, up), _capacity(1e9, up)(10000.0))
    assert up == [10000.0, 15000.0, 20000.0]  # never lost: up to the last factor, no bisection
    down: list[float] = []
    pings.find_knee(_capacity(100.0, down), _capacity(100.0, down)(10000.0))
    assert down == [10000.0, 7500.0, 5000.0, 2500.0, 1000.0]  # never kept up: down to the last factor


def test_a_load_with_loss_or_a_shortfall_is_not_kept_up() -> None:
    assert pings.kept_up({"target_rate": 1000, "rate": 990, "lost": 0})
    assert not pings.kept_up({"target_rate": 1000, "rate": 1000, "lost": 1})
    assert not pings.kept_up({"target_rate": 1000, "rate": 900, "lost": 0})  # late, not lost: still behind


def _metric(scaling: str, resolution: float = 0.0) -> report.Metric:
    return report.Metric("x", "x", "", report.per_round("x"), resolution=resolution, scaling=scaling)


@pytest.mark.parametrize(
    ("scaling", "small", "large", "lower_bound", "verdict"),
    [
        ("linear", 1.0, 20.0, False, "ok"),  # N x10: within 2x of linear is up to x20
        ("linear", 1.0, 20.5, False, "NO"),
        ("flat", 5.0, 10.0, False, "ok"),  # respawn: within 2x of the small N's figure
        ("flat", 5.0, 10.5, False, "NO"),
        ("zero", 0.0, 0.0, False, "ok"),
        ("zero", 0.0, 3.0, False, "NO"),
        ("info", 100.0, 5000.0, False, "–"),
        ("linear", 1.0, 120.0, True, "NO"),  # already too slow when the deadline passed
        ("linear", 10.0, 120.0, True, "unknown"),  # could still have ended within the bound
    ],
)
def test_scale_verdicts(scaling: str, small: float, large: float, lower_bound: bool, verdict: str) -> None:
    assert report.scale_verdict(_metric(scaling), small, large, 10.0, lower_bound)[2] == verdict


def test_scale_growth_from_below_the_resolution_counts_the_resolution() -> None:
    # idle CPU of 0 ticks at N=500 and 3 ticks at N=5000 grew x3, not infinitely
    grew, _, verdict = report.scale_verdict(_metric("linear", resolution=0.01), 0.0, 0.03, 10.0)
    assert grew == pytest.approx(3.0)
    assert verdict == "ok"


@pytest.mark.parametrize(("idle", "verdict"), [(0.03, "met"), (0.04, "MISSED")])
def test_idle_cpu_of_exactly_the_bound_meets_it(idle: float, verdict: str) -> None:
    # 0.03 * 30 / 30 is 0.029999999999999995 in floating point: three ticks must still be "met"
    results = json.loads((ROOT / "bench" / "runs" / "2026-12-01-full-b.json").read_text())
    for session in results["sessions"]["patrol"]["main"]:
        session["idle_cpu_s"] = idle
    row = next(line for line in report.targets(results).splitlines() if "idle CPU over 30 s" in line)
    assert row.rstrip(" |").endswith(verdict), row


@pytest.mark.parametrize(("rss_kib", "verdict"), [((40_000, 42_500), "met"), ((40_000, 42_501), "MISSED")])
def test_the_cost_of_one_more_app_is_issue_18s_definition(rss_kib: tuple[int, int], verdict: str) -> None:
    # (RSS at N=1000 - RSS at N=500) / 500, from the memory session: 2,500 KiB / 500 = 5 KB
    results = json.loads((ROOT / "bench" / "runs" / "2026-12-01-full-b.json").read_text())
    results["memory"] = {"n": [500, 1000], "rss_kib": list(rss_kib), "settle_s": 3.0}
    row = next(line for line in report.targets(results).splitlines() if "(N=1000 − N=500) / 500" in line)
    assert row.rstrip(" |").endswith(verdict), row
