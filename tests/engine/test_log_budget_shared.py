"""The budget of a log directory that several apps share.

``log-max-total-bytes`` bounds all log files of a directory together, and the files
being written count at the size they may reach (``log-max-bytes``). When none of the
apps sets it, one app's default (20 x ``log-max-bytes``) used to be the whole shared
directory's budget: from 11 apps on, their current files alone reached it, and every
file of an ended instance and every rotated generation was deleted as soon as it was
closed (the output of a crashed run gone when the operator came to read it). Each app
now brings its default share; a budget an app sets is still the directory's.
"""

from __future__ import annotations

import os
from pathlib import Path

from patrol.engine.logfiles import day_directory
from patrol.engine.logindex import LogIndex
from patrol.engine.logretention import prune
from patrol.testing import load_document

KIB = 1024
START = 1_800_000_000 * 10**9  # an instance's start, in ns (its files' names)


def app(directory: str, **limits: int) -> dict[str, object]:
    return {"keepalive": 1, "name": "n", "binary": "/bin/true", "working-directory": "/", "pid-path": "p",
            "log-directory": directory, **limits}


def index(apps: dict[str, dict[str, object]]) -> LogIndex:
    return LogIndex(load_document({"apps": apps}).apps.values())


def test_apps_sharing_a_directory_without_a_budget_add_up_their_default_shares(tmp_path: Path):
    shared = {f"a{i}": app(str(tmp_path / "shared"), **{"log-max-bytes": 4 * KIB}) for i in range(11)}
    alone = {"b": app(str(tmp_path / "alone"), **{"log-max-bytes": 4 * KIB})}
    logs = index({**shared, **alone})
    assert logs.get(str(tmp_path / "shared")).budget == 11 * 20 * 4 * KIB
    assert logs.get(str(tmp_path / "alone")).budget == 20 * 4 * KIB
    assert logs.shared(str(tmp_path / "shared")) and not logs.shared(str(tmp_path / "alone"))


def test_a_budget_an_app_sets_is_the_whole_directory_s_and_the_smallest_set_applies(tmp_path: Path):
    shared = {f"a{i}": app(str(tmp_path), **{"log-max-bytes": 4 * KIB}) for i in range(5)}
    shared["a1"]["log-max-total-bytes"] = 300 * KIB
    shared["a3"]["log-max-total-bytes"] = 200 * KIB
    assert index(shared).get(str(tmp_path)).budget == 200 * KIB
    shared["a1"]["log-max-total-bytes"] = 0  # set to "no limit": the one set that limits applies
    assert index(shared).get(str(tmp_path)).budget == 200 * KIB


def test_an_ended_instance_s_file_survives_in_a_directory_shared_by_eleven_apps(tmp_path: Path):
    """Eleven apps write 22 files (4 KiB each at most); an ended instance left 1 KiB:
    within the directory's budget, so it is kept. Under one app's default (80 KiB, less
    than the 88 KiB the current files may reach) the walk deleted it."""
    root = str(tmp_path)
    apps = {f"a{i}": app(root, **{"log-max-bytes": 4 * KIB}) for i in range(11)}
    day = Path(day_directory(root, START))
    day.mkdir(parents=True)
    writing: dict[str, int] = {}
    for i in range(11):
        for stream in ("stdout", "stderr"):
            current = day / f"{START + 1000 + i}.{stream}.log"
            current.write_bytes(b"now\n")
            writing[str(current)] = 4 * KIB
    ended = day / f"{START}.stdout.log"
    ended.write_bytes(b"the crash, explained\n" * 48)
    kept = prune(root, index(apps).get(root).budget, writing)
    assert kept.removed == [] and ended.exists()
    assert all(os.path.exists(path) for path in writing)
    one_app_s = prune(root, 20 * 4 * KIB, writing)  # the budget a shared directory had before
    assert one_app_s.removed == [str(ended)] and not ended.exists()


def test_once_shutdown_began_no_retention_walk_deletes_anything(tmp_path: Path):
    """docs/logs.md: the budget is checked after each end of an instance, but not while
    Patrol shuts down (each ended instance would ask for a walk; the next start does it).
    An old file far over the budget stays until then."""
    import asyncio

    from patrol.engine.logrouter import LogRouter
    from patrol.engine.logwriter import LogWriter
    from patrol.testing import load_item

    config = load_item("apps", app(str(tmp_path), **{"log-max-bytes": 1024, "log-max-total-bytes": 1024}), "a")
    day = Path(day_directory(str(tmp_path), START))
    day.mkdir(parents=True)
    old = day / f"{START}.stdout.log"
    old.write_bytes(b"x" * 4096)  # four times the budget

    async def scenario() -> bool:
        router = LogRouter(asyncio.get_running_loop(), [config], writer=LogWriter(threads=1), prune_interval=0)
        router.stop_pruning()
        router.prune_soon(str(tmp_path))  # what an instance ending now asks for
        router.prune_all()
        walking = bool(router._pruning) or bool(router._again)
        await router.close()
        return walking

    assert asyncio.run(scenario()) is False
    assert old.exists()
