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


def test_looks_that_can_wait_meet_at_one_moment_and_share_one_scan(sleepers, scans):
    """Runs ending one after another (a respawn every few ms at 5,000 apps) each look for
    what they left behind: they must share scans, not start one each, and each look
    still waits at least the delay it asked for (the respawn goes first)."""
    owners = ownership.Ownership()
    apps = [f"app/a{i}" for i in range(5)]
    mine = dict(zip(apps, sleepers(len(apps))))
    for app, pid in mine.items():
        owners.spawned(app, pid)
    delay = 0.2

    async def run_ended(app: str, after: float) -> tuple[dict[int, int], float]:
        await asyncio.sleep(after)  # this run ends a little after the one before
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await owners.census.settle(delay)
        waited = loop.time() - asked
        return await owners.children_of(app), waited

    async def respawns() -> list[tuple[dict[int, int], float]]:
        return await asyncio.gather(*(run_ended(app, 0.02 * n) for n, app in enumerate(apps)))

    found = asyncio.run(respawns())
    assert [sorted(f) for f, _ in found] == [[mine[app]] for app in apps]
    assert all(waited >= delay - 0.005 for _, waited in found), [w for _, w in found]
    assert scans[0] == 1, f"{scans[0]} scans for {len(apps)} runs that ended within {delay} s"


def test_a_look_after_the_shared_moment_waits_for_a_new_one(sleepers, scans):
    owners = ownership.Ownership()
    owners.spawned("app/a", sleepers(1)[0])
    delay = 0.05

    async def twice() -> list[float]:
        loop = asyncio.get_running_loop()
        waited = []
        for _ in range(2):
            asked = loop.time()
            await owners.census.settle(delay)
            waited.append(loop.time() - asked)
            await owners.children_of("app/a")
        return waited

    waited = asyncio.run(twice())
    assert all(w >= delay - 0.005 for w in waited), waited
    assert scans[0] == 2


def test_each_app_gets_its_own_children_from_the_scan_index_as_its_own_copy(sleepers, scans):
    """The scan indexes its children by owner once; an answer is the caller's to keep
    (a stop forgets what it stopped), and ``before`` leaves out the younger ones."""
    owners = ownership.Ownership()
    pids = sleepers(3)
    starts = {pid: owners.spawned("app/a" if pid != pids[2] else "app/b", pid) for pid in pids}

    async def ask() -> tuple[dict[int, int], dict[int, int], dict[int, int], dict[int, int]]:
        return await asyncio.gather(owners.children_of("app/a"), owners.children_of("app/a"),
                                    owners.children_of("app/b"), owners.children_of("app/none"))

    first, second, other, none = asyncio.run(ask())
    assert first == second == {p: starts[p] for p in pids[:2]} and other == {pids[2]: starts[pids[2]]}
    assert none == {} and scans[0] == 1
    first.clear()
    assert second == {p: starts[p] for p in pids[:2]}  # not one shared dict
    oldest = min(starts[p] for p in pids[:2])
    younger = asyncio.run(owners.children_of("app/a", before=oldest + 1))
    assert younger == {p: s for p, s in starts.items() if p in pids[:2] and s < oldest + 1}
