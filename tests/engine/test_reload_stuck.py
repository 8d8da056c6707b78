"""A reload whose reading hangs for good (a hung network file system) is given up at its
deadline, and no further reading is stacked on it while it is stuck (R1).

A hung mount cannot be made in a test, so the loader is replaced by a call that blocks
until the test releases it; everything else (the thread, the deadline, the config file
read once the hang is over) is real.
"""

from __future__ import annotations

import asyncio
import json
import threading

from patrol.engine import reload
from patrol.testing import installed_plugins


def test_a_stuck_reading_is_given_up_and_no_second_one_starts_until_it_ends(patrol, tmp_path, monkeypatch):
    path = tmp_path / "patrol.json"
    path.write_text(json.dumps(patrol.config(apps={"a": patrol.app(1)})))
    plugins = installed_plugins()
    release, calls = threading.Event(), []
    real_load = reload.load_config

    def hangs(*args):
        calls.append(args)
        release.wait(30)
        return real_load(*args)

    monkeypatch.setattr(reload, "load_config", hangs)
    monkeypatch.setattr(reload, "RELOAD_READ_TIMEOUT", 0.2)

    async def main() -> None:
        config, errors = await reload.read_config(path, plugins)
        assert config is None and errors == [f"{path}: could not be read within 0.2 s; the running config stays"]
        config, errors = await reload.read_config(path, plugins)
        assert config is None and "an earlier reload has been reading it" in errors[0], errors
        assert len(calls) == 1  # refused without starting another reading
        release.set()
        stuck = [t for t in threading.enumerate() if t.name == "patrol-reload"]
        await asyncio.get_running_loop().run_in_executor(None, lambda: [t.join(10) for t in stuck])
        config, errors = await reload.read_config(path, plugins)
        assert errors == [] and config is not None and set(config.apps) == {"a"}

    asyncio.run(main())
