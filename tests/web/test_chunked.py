"""``/status/`` as one plain body when it is one chunk, chunk by chunk when it is big.

Through a real Patrol and real HTTP: the answer parses and its ``Content-Length`` is
its length either way; a small answer does not pull in anyio's asyncio backend (which
Starlette's streaming responses need, and which would stay in the daemon for good: see
:mod:`patrol.web.chunked`), a big one still streams (and so does need it).
"""

from __future__ import annotations

import json
import re
import urllib.request

from patrol.testing import wait_for
from patrol.util.steps import CHUNK_BYTES

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", re.MULTILINE)
#: imported with anyio's asyncio backend, which a streaming response needs
BACKEND = "anyio.streams.memory"


def fetch(p, path: str) -> tuple[bytes, int]:
    with urllib.request.urlopen(f"http://{p.http}{path}", timeout=30) as resp:
        return resp.read(), int(resp.headers["Content-Length"])


def test_a_one_chunk_status_is_one_plain_body(patrol):
    p = patrol.start(patrol.config({"web": patrol.app()}), env={"PYTHONPROFILEIMPORTTIME": "1"})
    p.running_pid("web")
    body, length = fetch(p, "/status/")
    assert len(body) == length < CHUNK_BYTES
    assert "web" in json.loads(body)["apps"]
    imported = set(IMPORT_LINE.findall(p.log()))
    assert "starlette.responses" in imported  # the lines are there to read
    assert BACKEND not in imported


def test_a_status_bigger_than_a_chunk_is_streamed_whole(patrol):
    apps = {f"big{i}": patrol.app(keyvalue={"blob": f"{i}" * 50_000}) for i in range(8)}
    p = patrol.start(patrol.config(apps), env={"PYTHONPROFILEIMPORTTIME": "1"})
    p.running_pid("big0")
    body, length = fetch(p, "/status/")
    assert len(body) == length > CHUNK_BYTES
    answer = json.loads(body)
    assert [answer["apps"][f"big{i}"]["keyvalue"]["blob"] for i in range(8)] == [f"{i}" * 50_000 for i in range(8)]
    assert BACKEND in set(IMPORT_LINE.findall(p.log()))  # it took the streaming path


def test_a_big_answer_is_followed_by_a_release_of_free_memory(patrol):
    """Building and sending ``/status/`` of a few hundred apps leaves free heap resident
    for good: after an answer of at least ``BIG`` bytes it is handed back (the debug log
    says so), as after the start."""
    from patrol.web.chunked import BIG

    def releases() -> int:
        return sum(r.get("event") == "released free memory" for r in p.log_records())

    def big_status() -> bytes | None:
        try:
            return fetch(p, "/status/")[0]
        except OSError:
            return None  # not serving yet

    # No /status/ before the start's release: each one is a big answer here, and the
    # release it schedules (1 s after it) came within a second of the start's (2 s after
    # the burst): a wait for exactly one release then missed it under load (0 -> 2), or
    # counted the answer's release as the start's.
    apps = {f"kv{i}": patrol.app(keyvalue={"blob": f"{i}" * (BIG // 2)}) for i in range(3)}
    p = patrol.start(patrol.config(apps), wait=False)
    wait_for(lambda: releases() == 1, 15, "the release after the start")
    body = wait_for(big_status, 15, "the first /status/ answer")
    assert len(body) >= BIG
    wait_for(lambda: releases() == 2, 15, "a release after the big answer")
    assert p.running_pid("kv0")  # the apps ran meanwhile (this /status/ comes after the release)
