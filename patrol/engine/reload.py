"""Reloading the config: read it off the loop, then apply only what changed.

A reload (SIGHUP, ``patrol reload``, ``POST /-/reload``) reads and checks the file in a
daemon thread of its own with a deadline (10,000 apps take ~0.3 s), so supervision goes
on meanwhile; an invalid file changes nothing. The loader never waits on a FIFO or
device (it reads files as pid files are read), but an ``open`` on a hung network file
system can still hang for good: such a thread is abandoned at the deadline (never
joined, so Patrol still exits), and no reload reads again while it is stuck.
Then each table is compared item by item: new items start, removed ones stop (a removed
*service* is only no longer watched: Patrol never stops a system service it stops
managing), changed ones are stopped and started again with their state carried over,
unchanged ones are not touched, and neither are those whose ``depends-on`` alone changed
(start conditions: they apply to the next start).
"""

from __future__ import annotations

import dataclasses
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, MutableMapping

import structlog

from patrol.config import ConfigError, Methods, load_config
from patrol.plugin.loader import Plugins
from patrol.plugin.model import PatrolConfig
from patrol.util.daemonthread import StillRunning, in_daemon_thread

log = structlog.get_logger("patrol.supervisor")

#: longest a reload waits for the config file to be read and checked
RELOAD_READ_TIMEOUT = 60.0
#: reading threads still running past their deadline: threads of this process, whichever
#: supervisor started them; while one is left, a reload is refused instead of stacking more
_stuck: list[threading.Thread] = []


async def read_config(source: Path, plugins: Plugins) -> tuple[PatrolConfig | None, list[str]]:
    """The config in ``source`` (None and the errors when it cannot be used), read in a
    worker thread; warnings are logged."""
    methods = Methods(keepalives=plugins.keepalives, services=plugins.services, probes=plugins.probes)
    _stuck[:] = [thread for thread in _stuck if thread.is_alive()]
    if _stuck:
        log.error("reload refused: an earlier reading of the config is still stuck", file=str(source))
        return None, [f"{source}: an earlier reload has been reading it for more than {RELOAD_READ_TIMEOUT:g} s "
                      "(a hung file system?); the running config stays"]
    try:
        config, warnings = await in_daemon_thread(load_config, source, methods, timeout=RELOAD_READ_TIMEOUT,
                                                  name="patrol-reload")
    except StillRunning as exc:
        _stuck.append(exc.thread)
        log.error("reload refused: the config could not be read in time", file=str(source))
        return None, [f"{source}: could not be read within {RELOAD_READ_TIMEOUT:g} s; the running config stays"]
    except ConfigError as exc:
        log.error("reload refused: the config has errors", errors=exc.errors)
        return None, list(exc.errors)
    except Exception as exc:  # noqa: BLE001 - a bug in loading must not kill the reload task
        log.exception("reload refused: the config could not be loaded", file=str(source))
        return None, [f"{source}: could not be loaded ({type(exc).__name__}); "
                      "the running config stays (details in Patrol's log)"]
    for line in warnings:
        log.warning("config", problem=line)
    return config, []


async def apply_table(table: MutableMapping[str, Any], old: Any, new: Any, make: Callable[..., Any], group: str,
                      report: dict[str, list[str]], forget: Callable[[str, str], None] | None,
                      burst: Callable[[], ContextManager[None]] = nullcontext) -> None:
    """Bring one table of runners (apps or services) from ``old`` to ``new`` configs.

    ``make(config, state=None)`` builds a runner; ``forget(group, id)`` drops a removed
    item from the state file; ``report`` collects what was added, removed, changed and
    left unchanged.
    """
    for item_id in sorted(old.keys() - new.keys()):
        runner = table.pop(item_id)
        if group == "app":
            await runner.stop("removed from the config")
        else:
            runner.detach()
        if forget is not None:
            forget(group, item_id)
        report["removed"].append(f"{group} {item_id}")
    for item_id in sorted(new.keys() & old.keys()):
        if new[item_id] == old[item_id]:
            report["unchanged"].append(f"{group} {item_id}")
            continue
        if dataclasses.replace(new[item_id], depends_on=old[item_id].depends_on) == old[item_id]:
            # only its start conditions changed: the item itself runs on untouched (the
            # supervisor has every item look at its conditions once the tables are applied)
            table[item_id].config = new[item_id]
            report["unchanged"].append(f"{group} {item_id}")
            continue
        runner = table[item_id]
        if group == "app":
            await runner.stop("config changed")
        else:
            runner.detach()
        table[item_id] = make(new[item_id], runner.state)
        table[item_id].start()
        report["changed"].append(f"{group} {item_id}")
    with burst():  # what a reload adds starts as one burst, like Patrol's start
        for item_id in sorted(new.keys() - old.keys()):
            table[item_id] = make(new[item_id])
            table[item_id].start()
            report["added"].append(f"{group} {item_id}")
