"""The ``patrol`` command.

Daemon commands (``run``, ``check``, ``plugins``) load plugins; client commands talk to a
running Patrol over its API and never load plugins, so a broken plugin can never break
``patrol --help`` or ``patrol status``.

Exit codes: 0 ok; 1 the config is invalid (or a request was refused); 2 usage error or
unreadable config; 3 Patrol unreachable (client commands).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="patrol",
        description="Keep apps and services alive; watch and steer them over HTTP, UDP and a web GUI.",
    )
    parser.add_argument("--version", action=_VersionAction,
                        help="print Patrol's version and each installed plugin's, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="supervise the apps and services of a config file")
    run.add_argument("config", help="config file (.json in the original format, or .toml)")
    run.add_argument("--log-format", choices=["auto", "console", "json"], default="auto",
                     help="console on a terminal, JSON lines otherwise (default: auto)")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    check = sub.add_parser("check", help="validate a config file; print every problem at once")
    check.add_argument("config")

    plugins = sub.add_parser("plugins", help="list installed plugins, what they register, and failures")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    from patrol import client

    client.add_commands(sub)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: the kernel and every plugin, read from metadata only.

    Worked out when asked for, not when the parser is built, so other commands do not
    pay for reading every installed distribution.
    """

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from patrol.plugin.versions import describe

        print(describe())
        parser.exit()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    handler = COMMANDS.get(args.command)
    if handler is None:
        from patrol import client

        return client.run(args)
    return handler(args)


# -- daemon commands -------------------------------------------------------------------


def _load(path: str):  # type: ignore[no-untyped-def]
    """Load plugins and config; returns (plugins, config, warnings) or an exit code."""
    from patrol.config import ConfigError, Methods, load_config
    from patrol.plugin.loader import PluginLoadError, Plugins

    try:
        plugins = Plugins()
    except PluginLoadError as exc:
        print(f"patrol: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        config, warnings = load_config(path, Methods(keepalives=plugins.keepalives, services=plugins.services))
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
    from patrol.plugin.loader import PluginLoadError, Plugins

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
    from patrol import log

    log.setup("auto", "warning")


def cmd_run(args: argparse.Namespace) -> int:
    from patrol import log

    log.setup(args.log_format, args.log_level)
    loaded = _load(args.config)
    if isinstance(loaded, int):
        return loaded
    plugins, config, warnings = loaded
    import structlog

    logger = structlog.get_logger("patrol")
    for line in warnings:
        logger.warning("config", problem=line)
    from patrol.engine.supervisor import Supervisor

    config = Supervisor.adjust_config(config)  # the original's unit-test mode, if asked for
    import asyncio  # here, not at the top: client commands start faster without it

    import sqlite3

    from patrol.engine.state_file import StateFileLocked, StateFileTooNew, Store, default_path

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


async def _serve(config, plugins, store) -> int:  # type: ignore[no-untyped-def]
    from patrol.engine.supervisor import Supervisor

    await Supervisor(config, plugins, store=store).run(daemon_signals=True, freeze_heap=True)
    return EXIT_OK


COMMANDS = {"run": cmd_run, "check": cmd_check, "plugins": cmd_plugins}
