"""Plain-text tables and numbers as operators read them (``ps``, ``supervisorctl``)."""

from __future__ import annotations

import re
from typing import Sequence

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def visible(text: str) -> int:
    """Its width on a terminal (colour codes take none)."""
    return len(_ANSI.sub("", text))


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(visible(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(cell) + " " * (width - visible(str(cell)))
                        for cell, width in zip(row, widths, strict=True)).rstrip())


def duration(seconds: float) -> str:
    """Like supervisorctl: ``1:02:03``, ``3 days, 4:05:06``."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days} day{'s' if days != 1 else ''}, {clock}" if days else clock


def size(n: int) -> str:
    """Bytes in the units of ``ps``/``top``: ``512B``, ``12.3M``."""
    units, value, i = "BKMG", float(n), 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{n}B" if i == 0 else f"{value:.1f}{units[i]}"
