"""Client commands of ``patrol``: talk to a running Patrol over its HTTP API."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Add the client subcommands to the ``patrol`` parser."""


def run(args: argparse.Namespace) -> int:
    raise SystemExit(2)
