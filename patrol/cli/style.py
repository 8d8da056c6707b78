"""Colours for the client's output: on a terminal only, never with ``NO_COLOR`` set
(https://no-color.org), never when piped. Unknown states (a newer Patrol may have
more) are shown as they are, uncoloured."""

from __future__ import annotations

import os
from typing import TextIO

RESET = "\x1b[0m"
GREEN, YELLOW, RED, DIM, BOLD, CYAN, MAGENTA, BLUE = (
    "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[2m", "\x1b[1m", "\x1b[36m", "\x1b[35m", "\x1b[34m")
STATES = {
    "running": GREEN, "ready": GREEN, "starting": YELLOW, "stopping": YELLOW, "restarting": YELLOW,
    "backoff": YELLOW, "waiting": YELLOW, "unready": RED, "given-up": RED, "stopped": DIM, "disabled": DIM,
    "exited": DIM,
}
#: colours of the ids prefixed to log lines (like docker compose logs), in turn
PREFIXES = (CYAN, YELLOW, GREEN, MAGENTA, BLUE)


def wanted(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


class Style:
    def __init__(self, on: bool) -> None:
        self.on = on

    def paint(self, text: str, colour: str) -> str:
        return f"{colour}{text}{RESET}" if self.on and colour and text else text

    def state(self, text: str, state: str) -> str:
        return self.paint(text, STATES.get(state, ""))
