"""The look for processes that left their app's session: one scan of Patrol's children
shared by every app asking at once (a shutdown asks once per app), never a stale one.

Real child processes of the test (it plays Patrol: they are its children), real
``/proc``; ``procfs.children`` is only counted, not replaced."""

import asyncio
import subprocess

import pytest

from patrol.engine import ownership, procfs


@pytest.fixture
def sleepers():
    started: list[subprocess.Popen[bytes]] = []

    def start(count: int) -> list[int]:
        for _ in range(count):
            started.append(subprocess.Popen(["sleep", "60"], start_new_session=True))
        return [p.pid for p in started[-count:]]

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.fixture
def scans(monkeypatch):
    """How many times Patrol's children are listed (each is a scan of all of them)."""
    count = [0]
    real = procfs.children

    def counted() -> set[int]:
        count[0] += 1
        return real()

    monkeypatch.setattr(procfs, "children", counted)
    return count


def test_apps_stopping_at_once_share_one_scan_of_the_children(sleepers, scans):
    owners = ownership.Ownership()
    apps = [f"app/a{i}" for i in range(40)]
    mine = {}
    for app, pid in zip(apps, sleepers(len(apps))):
        owners.spawned(app, pid)
        mine[app] = pid

    async def shutdown() -> list[dict[int, int]]:
        return await asyncio.gather(*(owners.children_of(app) for app in apps))

    found = asyncio.run(shutdown())
    assert [sorted(f) for f in found] == [[mine[app]] for app in apps]  # each app its own child
    assert scans[0] == 1, f"{scans[0]} scans of every child for one shutdown of {len(apps)} apps"


def test_who_asks_during_a_scan_gets_a_scan_that_starts_after_the_question(sleepers, scans):
    owners = ownership.Ownership()
    for pid in sleepers(80):  # enough children for the scan to give the loop turns (every 32)
        owners.spawned("app/old", pid)

    async def scenario() -> tuple[dict[int, int], int]:
        first = asyncio.create_task(owners.children_of("app/old"))
        while scans[0] == 0:  # until the first scan is under way (and gave the loop a turn)
            await asyncio.sleep(0)
        assert not first.done()
        late = sleepers(1)[0]  # re-parented to Patrol while the first scan runs
        owners.spawned("app/new", late)
        found = await owners.children_of("app/new")
        await first
        return found, late

    found, late = asyncio.run(scenario())
    assert late in found
    assert scans[0] == 2
