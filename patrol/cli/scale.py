"""``patrol scale ID N``: give a set of instances N copies (a client command).

Sends ``{"group": "app", "id": ID, "instances": N}``: Patrol records the new size in
its state file before it answers, stops the copies beyond N (highest first) and starts
the missing ones. Standard library only, like the whole client.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from patrol.cli.address import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, ClientError

#: the most copies a set may have (patrol.config.instances.MAX_INSTANCES; the client
#: does not import the kernel, a test checks that both agree)
MAX_INSTANCES = 1000


def add_command(sub: Any, where: argparse.ArgumentParser) -> None:
    scale = sub.add_parser("scale", parents=[where],
                           help="give a set of instances (an app with \"instances\") N copies")
    scale.add_argument("id", help="the set's id (the app's id in the config)")
    scale.add_argument("instances", type=int, metavar="N", help=f"how many copies, 0..{MAX_INSTANCES}")
    scale.add_argument("--secret", default=os.environ.get("PATROL_SECRET", ""),
                       help="the set's secret (default: $PATROL_SECRET)")


def cmd_scale(client: Any, args: argparse.Namespace) -> int:
    """``client`` is a :class:`patrol.cli.client.Client`."""
    if not 0 <= args.instances <= MAX_INSTANCES:
        raise ClientError(f"scale: N must be from 0 to {MAX_INSTANCES}", EXIT_USAGE)
    request: dict[str, Any] = {"group": "app", "id": args.id, "instances": args.instances}
    if args.secret:
        request["secret"] = args.secret
    before = client.api(request)
    if before.get("cas-invalid"):
        raise ClientError(f"{args.id} has a secret: nothing was changed (pass --secret or set PATROL_SECRET)",
                          EXIT_REFUSED)
    print(f"{before.get('id', args.id)}: scaling to {args.instances} (it had {before.get('instances', '?')})")
    return EXIT_OK


def state_before(before: dict[str, Any]) -> str:
    """What an answer says the item was: its state, or for a set of instances (whose
    answer has its copies, not a state) how many copies it had."""
    items = before.get("items")
    if isinstance(items, dict):
        return f"a set of {len(items)} copies"
    return str(before.get("state", "unknown"))
