"""How the GUI writes times, durations and sizes: short, and the same on every page.

The JSON API keeps the original's timestamp layouts; people reading a dashboard want
"3h 12m" and "2026-05-01 14:03:07", so these helpers exist beside ``patrol.util.gotime``.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone


def duration(seconds: float | None) -> str:
    """``45s``, ``3m 05s``, ``2h 07m``, ``4d 03h``: two units are enough to read at a glance."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {s:02d}s"
    return f"{s}s"


def local_time(ts: float | None) -> str:
    """Local wall time with the date, as operators compare it with their own logs."""
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def iso_time(ts: float | None) -> str:
    """Machine-readable time for ``<time datetime=...>`` (UTC, RFC 3339)."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def size(n: int | None) -> str:
    """Bytes as ``512 B``, ``1.5 KiB``, ``12.0 MiB``."""
    if n is None:
        return ""
    if n < 1024:
        return f"{n} B"
    units = ("KiB", "MiB", "GiB", "TiB")
    value, unit = n / 1024, 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{value:.1f} {units[unit]}"
