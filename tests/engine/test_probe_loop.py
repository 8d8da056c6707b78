"""One probe of one run (``patrol.engine.probing``): thresholds counted with ``>=`` and
reported once per streak, the timeout, a probe's bugs, and an early look on request.
Real asyncio, real probe classes: only the clock of a check is the test's."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from patrol import Probe, ProbeResult
from patrol.engine.output_lines import MAX_LINE, OutputLines
from patrol.engine.probing import ProbeLoop
from patrol.plugin.model import ProbeSpec


class Log:
    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def error(self, event: str, **fields: Any) -> None:
        self.errors.append({"event": event, **fields})


class Scripted(Probe):
    """Answers from a list the test fills."""

    name = "scripted"
    answers: list[Any] = []
    calls = 0

    async def check(self) -> ProbeResult:
        type(self).calls += 1
        answer = type(self).answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            return ProbeResult(True, "late")
        return answer


def loop_of(spec: ProbeSpec, cls: type[Probe] = Scripted) -> tuple[ProbeLoop, list[tuple[bool | None, bool]], Log]:
    seen: list[tuple[bool | None, bool]] = []
    log = Log()
    loop = ProbeLoop("readiness", spec, cls, target=None, plugin="tests (test-dist 1.0)",  # no target: not used
                     changed=lambda lp, flipped: seen.append((lp.passing, flipped)), log=log)
    return loop, seen, log


def test_streaks_flip_the_verdict_once_each_at_their_threshold() -> None:
    loop, seen, _ = loop_of(ProbeSpec("scripted", success_threshold=2, failure_threshold=3))
    ok, bad = ProbeResult(True, "fine"), ProbeResult(False, "HTTP 500")
    for result in (bad, ok, ok, ok, bad, bad, bad, bad, ok):
        loop.record(result)
    assert seen == [(None, False), (None, False), (True, True), (True, False), (True, False), (True, False),
                    (False, True), (False, False), (False, False)]
    assert loop.last == ProbeResult(True, "fine") and loop.successes == 1 and loop.failures == 0


def test_a_long_message_is_cut() -> None:
    loop, _, _ = loop_of(ProbeSpec("scripted"))
    loop.record(ProbeResult(False, "x" * 1000))
    assert loop.last is not None and len(loop.last.message) == 303 and loop.last.message.endswith("...")


def test_a_late_raising_or_odd_answer_is_a_failure_naming_the_plugin() -> None:
    async def main() -> list[ProbeResult]:
        Scripted.answers = [5.0, RuntimeError("boom"), "yes", ProbeResult(True, "ok")]
        loop, _, log = loop_of(ProbeSpec("scripted", timeout=0.05))
        results = [await loop.attempt() for _ in range(4)]
        assert [e["where"] for e in log.errors] == ["check"]  # logged once per run, not per period
        return results

    results = asyncio.run(main())
    assert results[0] == ProbeResult(False, "timed out after 0.05 s")
    assert results[1] == ProbeResult(
        False, "probe 'scripted' (plugin tests (test-dist 1.0)) failed in check(): RuntimeError: boom")
    assert results[2] == ProbeResult(
        False, "probe 'scripted' (plugin tests (test-dist 1.0)) returned str, not a ProbeResult")
    assert results[3] == ProbeResult(True, "ok")


class Broken(Probe):
    name = "broken"

    def __init__(self, target: Any, settings: Any) -> None:
        raise ValueError("bad settings")

    async def check(self) -> ProbeResult:
        raise AssertionError("never called")


def test_a_probe_that_cannot_be_made_fails_every_check() -> None:
    async def main() -> ProbeResult:
        loop, _, log = loop_of(ProbeSpec("broken"), Broken)
        assert log.errors[0]["where"] == "start"
        return await loop.attempt()

    assert asyncio.run(main()) == ProbeResult(
        False, "probe 'broken' (plugin tests (test-dist 1.0)) failed in start(): ValueError: bad settings")


def test_check_now_looks_before_the_period_is_over() -> None:
    async def main() -> None:
        Scripted.calls = 0
        Scripted.answers = [ProbeResult(False, "not yet"), ProbeResult(True, "now")]
        loop, seen, _ = loop_of(ProbeSpec("scripted", period=3600, success_threshold=1))
        loop.begin()
        deadline = time.monotonic() + 10
        while Scripted.calls < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        loop.check_now()  # the period is an hour: only the request can bring the second look
        while not seen[1:] and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        loop.end()
        assert seen == [(None, False), (True, True)]
        assert Scripted.calls == 2

    asyncio.run(main())


def test_the_first_look_comes_after_the_initial_delay_then_one_each_period() -> None:
    async def main() -> list[float]:
        Scripted.calls = 0
        Scripted.answers = [ProbeResult(True, "one"), ProbeResult(True, "two"), ProbeResult(True, "three")]
        loop, _, _ = loop_of(ProbeSpec("scripted", initial_delay=0.3, period=0.1))
        begun = time.monotonic()
        looks: list[float] = []
        loop.changed = lambda lp, flipped: looks.append(time.monotonic() - begun)
        loop.begin()
        deadline = begun + 10
        while len(looks) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        loop.end()
        return looks

    looks = asyncio.run(main())
    assert len(looks) == 3 and looks[0] >= 0.3  # never before the initial delay
    assert looks[1] - looks[0] >= 0.1 and looks[2] - looks[1] >= 0.1  # then one per period


# -- the lines of a run's output ---------------------------------------------------------


def test_output_lines_are_cut_at_newlines_per_stream_and_in_pieces_when_long() -> None:
    lines = OutputLines()
    got: list[tuple[str, str]] = []
    subscription = lines.listen(lambda stream, line: got.append((stream, line)))
    lines.feed("stdout", b"one\ntw")
    lines.feed("stderr", b"err\xff\r\n")
    lines.feed("stdout", b"o\n" + b"x" * (MAX_LINE + 10))
    lines.end("stdout")
    assert got == [("stdout", "one"), ("stderr", "err\ufffd"), ("stdout", "two"), ("stdout", "x" * MAX_LINE),
                   ("stdout", "x" * 10)]
    subscription.cancel()
    lines.feed("stdout", b"unheard\n")
    assert len(got) == 5
    subscription.cancel()  # twice is harmless


def test_a_listener_that_raises_is_removed_and_the_others_still_hear() -> None:
    lines = OutputLines()
    heard: list[str] = []

    def bad(stream: str, line: str) -> None:
        raise RuntimeError("listener bug")

    lines.listen(bad)
    lines.listen(lambda stream, line: heard.append(line))
    lines.feed("stdout", b"a\nb\n")
    assert heard == ["a", "b"] and len(lines.subscriptions) == 1
