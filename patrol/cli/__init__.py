"""The ``patrol`` command: the parser, and the choice between the two kinds of command.

Server commands (``run``, ``check``, ``plugins``: :mod:`patrol.cli.server`) load plugins;
client commands (:mod:`patrol.cli.client`) talk to a running Patrol over its API and
never load plugins, so a broken plugin can never break ``patrol --help`` or ``patrol
status``. This module imports only the standard library at the top: the client path
never loads pluggy or the web stack. The command line sits on top: it may import the
wiring (:mod:`patrol.daemon`) and every layer below it, never the web stack directly.

Exit codes: 0 ok; 1 the config is invalid (or a request was refused); 2 usage error or
unreadable config; 3 Patrol unreachable (client commands); 141 the output pipe was closed
(``patrol logs -f | head``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def build_parser(*, clients: bool = True) -> argparse.ArgumentParser:
    """The whole command line; without ``clients``, only the server commands' (what
    ``patrol run ...`` parses: the client commands' arguments, and the modules that
    describe them, would stay in the daemon's memory for its whole life, ~45 KB)."""
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
    run.add_argument("--init", action="store_true",
                     help="act as a container's init, as when Patrol is pid 1 (docs/containers.md)")

    check = sub.add_parser("check", help="validate a config file; print every problem at once")
    check.add_argument("config")

    plugins = sub.add_parser("plugins", help="list installed plugins, what they register, and failures")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    if clients:
        from patrol.cli import client_args

        client_args.add_commands(sub)
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
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (``patrol logs -f | head``): end quietly, and keep Python's
        # own flush at exit from failing on the same closed pipe
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    given = sys.argv[1:] if argv is None else list(argv)
    # a server command is always the first word (the only options before it, -h and
    # --version, need the whole parser); its own arguments and errors are the same either way
    parser = build_parser(clients=not given or given[0] not in SERVER_COMMANDS)
    args = parser.parse_args(given)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "completion":
        from patrol.cli.completion import cmd_completion

        return cmd_completion(parser, args.shell)
    if args.command in SERVER_COMMANDS:
        del parser  # `patrol run` lives inside this call: every command's parser (~115 KiB) is not kept for its life
        from patrol.cli import server

        return server.COMMANDS[args.command](args)
    from patrol.cli import client

    return client.run(args)


#: the exit status of a command whose output pipe was closed (as a shell reports SIGPIPE: 128 + 13)
EXIT_BROKEN_PIPE = 141
#: the commands that load plugins and configs on this machine (patrol.cli.server)
SERVER_COMMANDS = ("run", "check", "plugins")
