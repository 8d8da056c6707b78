"""Exponential backoff that cannot overflow.

``base * factor ** n`` overflows a float after about a thousand steps (or at once with a
huge factor), so the cap is applied before the power is computed: once ``n`` reaches the
step where the delay would pass the cap, the cap is the answer.
"""

from __future__ import annotations

import math


def capped_exponential(base: float, factor: float, steps: int, cap: float) -> float:
    """``min(base * factor ** steps, cap)`` for any number of steps, without OverflowError."""
    if base <= 0:
        return 0.0
    if base >= cap:
        return cap
    if steps <= 0 or factor <= 1:
        return base
    if steps >= math.log(cap / base) / math.log(factor):
        return cap
    try:
        return min(base * factor**steps, cap)
    except OverflowError:  # an infinite cap
        return cap
