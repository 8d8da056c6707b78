"""The commands that run on Patrol's side: ``run``, ``check`` and ``plugins``.

They load the installed plugins and a config file (``run`` then builds the daemon,
:mod:`patrol.daemon`). Exit codes: 0 ok; 1 the config is invalid (or a plugin failed
under strict loading, or the state file is in use); 2 usage error or unreadable config.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

from patrol.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, logsetup
from patrol.config import ConfigError, Methods, load_config
from patrol.plugin.loader import PluginLoadError, Plugins
from patrol.plugin.model import PatrolConfig

if TYPE_CHECKING:
    from patrol.engine.state_file import Store


def _load(path: str) -> tuple[Plugins, PatrolConfig, list[str]] | int:
    """Load plugins and config; returns (plugins, config, warnings) or an exit code."""
    try:
        plugins = Plugins()
    except PluginLoadError as exc:
        print(f"patrol: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        methods = Methods(keepalives=plugins.keepalives, services=plugins.services, probes=plugins.probes)
        config, warnings = load_config(path, methods)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        for line in getattr(exc, "warnings", []):  # a typo'd key often explains an error
            print(f"warning: {line}", file=sys.stderr)
        for failed in plugins.failed:
            print(f"note: plugin {failed.name} failed to load: {failed.error}", file=sys.stderr)
        return EXIT_USAGE if exc.unreadable else EXIT_INVALID
    return plugins, config, warnings


def cmd_check(args: argparse.Namespace) -> int:
    _log_to_stderr()
    loaded = _load(args.config)
    if isinstance(loaded, int):
        return loaded
    _, config, warnings = loaded
    from patrol.config.files import machine_warnings

    for line in warnings + machine_warnings(config, args.config):
        print(f"warning: {line}", file=sys.stderr)
    print(f"{args.config}: ok ({len(config.apps)} apps, {len(config.services)} services)")
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    _log_to_stderr()
    try:
        plugins = Plugins()
    except PluginLoadError as exc:
        print(f"patrol: {exc}", file=sys.stderr)
        return EXIT_INVALID
    info = plugins.describe()
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    for p in info["loaded"]:
        origin = f"{p['dist']} {p['version']}" if p["dist"] else "built-in"
        print(f"{p['name']:<20} {origin:<32} {', '.join(p['registers']) or '-'}")
    for f in info["failed"]:
        print(f"{f['name']:<20} FAILED: {f['error']}")
    return EXIT_OK


def _log_to_stderr() -> None:
    """Log lines (a plugin that failed to load) go to stderr: stdout is the answer
    (``patrol plugins --json`` must stay one JSON document)."""
    logsetup.setup("auto", "warning")


def cmd_run(args: argparse.Namespace) -> int:
    init = args.init or os.getpid() == 1
    if init:
        _exit_on_early_signals()
    logsetup.setup(args.log_format, args.log_level)
    loaded = _load(args.config)
    if isinstance(loaded, int):
        return loaded
    plugins, config, warnings = loaded
    import structlog

    logger = structlog.get_logger("patrol")
    for line in warnings:
        logger.warning("config", problem=line)
    if init:
        logger.info("running as a container's init", pid=os.getpid(), exit_with=config.exit_with or None)
    from patrol.config.load import adjust_config

    config = adjust_config(config)  # the original's unit-test mode, if asked for
    import asyncio
    import sqlite3

    from patrol.engine.state_file import StateFileTooNew, Store, default_path
    from patrol.engine.state_lock import StateFileLocked

    state_file = config.state_file or default_path(str(config.source) if config.source else None)
    try:
        store = Store(state_file)
    except (StateFileLocked, StateFileTooNew, OSError, sqlite3.Error) as exc:
        logger.error("cannot open the state file", file=state_file, error=str(exc))
        return EXIT_INVALID
    try:
        return asyncio.run(_serve(config, plugins, store))
    except OSError as exc:
        logger.error("cannot start", error=str(exc))
        return EXIT_INVALID
    finally:
        store.close()


async def _serve(config: PatrolConfig, plugins: Plugins, store: Store) -> int:
    from patrol.daemon import Daemon
    from patrol.engine import heap_trim

    heap_trim.fix_mmap_threshold()  # (process-wide, as freeze_heap)

    daemon = Daemon(config, plugins, store=store)
    await daemon.run(daemon_signals=True, freeze_heap=True)
    return daemon.supervisor.exit_code  # 0, or the exit of the exit-with app


def _exit_on_early_signals() -> None:
    """As a container's init: a stop request that comes before the supervisor handles
    signals (while plugins and the config load) ends Patrol at once, with nothing
    started. Pid 1 gets no signal it has no handler for, so without this a ``docker
    stop`` in that moment would wait for its SIGKILL."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(EXIT_OK)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, leave)


COMMANDS = {"run": cmd_run, "check": cmd_check, "plugins": cmd_plugins}
