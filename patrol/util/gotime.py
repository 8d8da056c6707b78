"""Timestamps written with Go time layouts, as the original Patrol wrote them.

The config's ``json-timestamp`` is a Go layout: the reference time
``Mon Jan 2 15:04:05 MST 2006`` spelled the way every timestamp should look
(``2006-01-02T15:04:05Z07:00`` is RFC 3339). Existing configs and API clients depend
on those layouts, so Patrol interprets them exactly as Go's ``time.Format`` does
instead of asking users for strftime patterns. Times are local (``TZ`` is respected).
"""

from __future__ import annotations

import calendar
import math
import re
import time
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any, Callable, NamedTuple

#: Go's named layouts (package ``time``), for callers and for helpful errors.
LAYOUTS = {
    "ANSIC": "Mon Jan _2 15:04:05 2006",
    "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RubyDate": "Mon Jan 02 15:04:05 -0700 2006",
    "RFC822": "02 Jan 06 15:04 MST",
    "RFC822Z": "02 Jan 06 15:04 -0700",
    "RFC850": "Monday, 02-Jan-06 15:04:05 MST",
    "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
    "RFC1123Z": "Mon, 02 Jan 2006 15:04:05 -0700",
    "RFC3339": "2006-01-02T15:04:05Z07:00",
    "RFC3339Nano": "2006-01-02T15:04:05.999999999Z07:00",
    "Kitchen": "3:04PM",
    "Stamp": "Jan _2 15:04:05",
    "StampMilli": "Jan _2 15:04:05.000",
    "StampMicro": "Jan _2 15:04:05.000000",
    "StampNano": "Jan _2 15:04:05.000000000",
    "DateTime": "2006-01-02 15:04:05",
    "DateOnly": "2006-01-02",
    "TimeOnly": "15:04:05",
}
RFC3339 = LAYOUTS["RFC3339"]
RFC1123Z = LAYOUTS["RFC1123Z"]

_MONTHS = ("January", "February", "March", "April", "May", "June", "July",
           "August", "September", "October", "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ZONES = ("Z07:00:00", "Z070000", "Z07:00", "Z0700", "Z07",
          "-07:00:00", "-070000", "-07:00", "-0700", "-07")
_TOKENS = sorted(
    ("January", "Jan", "Monday", "Mon", "MST", "2006", "06", "01", "1", "02", "2", "_2",
     "002", "__2", "15", "03", "3", "04", "4", "05", "5", "PM", "pm", *_ZONES),
    key=len, reverse=True,
)


class Token(NamedTuple):
    """A reference element of a layout, e.g. ``2006`` or ``.000``."""

    text: str


Chunk = str | Token


@lru_cache(maxsize=64)
def chunks(layout: str) -> tuple[Chunk, ...]:
    """Split a layout into literal text and tokens, with Go's ``nextStdChunk`` rules."""
    out: list[Chunk] = []
    literal = ""
    i = 0
    while i < len(layout):
        token = _token_at(layout, i)
        if token is None:
            literal += layout[i]
            i += 1
            continue
        if literal:
            out.append(literal)
            literal = ""
        out.append(Token(token))
        i += len(token)
    if literal:
        out.append(literal)
    return tuple(out)


def _token_at(layout: str, i: int) -> str | None:
    if layout.startswith("_2006", i):  # Go reads "_" literally here, then the year
        return None
    if layout[i] in ".," and layout[i + 1:i + 2] in ("0", "9"):
        run = re.match(r"0+|9+", layout[i + 1:])
        assert run is not None
        end = i + 1 + run.end()
        return None if layout[end:end + 1].isdigit() else layout[i:end]
    for token in _TOKENS:
        if layout.startswith(token, i):
            if token in ("Jan", "Mon") and re.match("[a-z]", layout[i + 3:i + 4]):
                return None  # "Janet", "Month": plain words
            return token
    return None


# -- formatting ----------------------------------------------------------------------

def _h12(t: time.struct_time) -> int:
    return t.tm_hour % 12 or 12


_FORMAT: dict[str, Callable[[time.struct_time], str]] = {
    "2006": lambda t: f"{t.tm_year:04d}",
    "06": lambda t: f"{t.tm_year % 100:02d}",
    "January": lambda t: _MONTHS[t.tm_mon - 1],
    "Jan": lambda t: _MONTHS[t.tm_mon - 1][:3],
    "1": lambda t: str(t.tm_mon),
    "01": lambda t: f"{t.tm_mon:02d}",
    "Monday": lambda t: _DAYS[t.tm_wday],
    "Mon": lambda t: _DAYS[t.tm_wday][:3],
    "2": lambda t: str(t.tm_mday),
    "_2": lambda t: f"{t.tm_mday:2d}",
    "02": lambda t: f"{t.tm_mday:02d}",
    "002": lambda t: f"{t.tm_yday:03d}",
    "__2": lambda t: f"{t.tm_yday:3d}",
    "15": lambda t: f"{t.tm_hour:02d}",
    "3": lambda t: str(_h12(t)),
    "03": lambda t: f"{_h12(t):02d}",
    "4": lambda t: str(t.tm_min),
    "04": lambda t: f"{t.tm_min:02d}",
    "5": lambda t: str(t.tm_sec),
    "05": lambda t: f"{t.tm_sec:02d}",
    "PM": lambda t: "PM" if t.tm_hour >= 12 else "AM",
    "pm": lambda t: "pm" if t.tm_hour >= 12 else "am",
    "MST": lambda t: t.tm_zone or _zone("-0700", t.tm_gmtoff),
}


def _zone(token: str, offset: int) -> str:
    """A numeric zone; the ``Z`` forms print ``Z`` for UTC (ISO 8601), as Go does."""
    if offset == 0 and token.startswith("Z"):
        return "Z"
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    fields = (offset // 3600, offset // 60 % 60, offset % 60)
    digits = token[1:].replace(":", "")
    return sign + (":" if ":" in token else "").join(f"{f:02d}" for f in fields[: len(digits) // 2])


def _fraction(token: str, nanos: int) -> str:
    """``.000`` keeps exactly that many digits (truncated); ``.999`` drops trailing zeros."""
    digits = f"{nanos:09d}"[: len(token) - 1]
    if token[1] == "9":
        digits = digits.rstrip("0")
        return token[0] + digits if digits else ""
    return token[0] + digits


def format_time(ts: float, layout: str) -> str:
    """Format the epoch time ``ts`` in local time with a Go layout ("" means RFC 3339)."""
    seconds = math.floor(ts)
    nanos = round((ts - seconds) * 1e9)
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    if not _has_fraction(layout):
        # a status page formats the same seconds over and over; the zone is part of the key
        return _format_second(seconds, layout, time.tzname, time.timezone)
    return _format(seconds, nanos, layout)


@lru_cache(maxsize=64)
def _has_fraction(layout: str) -> bool:
    return any(not isinstance(c, str) and c.text[0] in ".," for c in chunks(layout or RFC3339))


@lru_cache(maxsize=4096)
def _format_second(seconds: int, layout: str, zone: tuple[str, str], offset: int) -> str:
    return _format(seconds, 0, layout)


def _format(seconds: int, nanos: int, layout: str) -> str:
    t = time.localtime(seconds)
    out = []
    for chunk in chunks(layout or RFC3339):
        if isinstance(chunk, str):
            out.append(chunk)
        elif chunk.text[0] in ".,":
            out.append(_fraction(chunk.text, nanos))
        elif chunk.text in _FORMAT:
            out.append(_FORMAT[chunk.text](t))
        else:
            out.append(_zone(chunk.text, t.tm_gmtoff))
    return "".join(out)


# -- parsing ---------------------------------------------------------------------------

_OPTIONAL_FRACTION = Token(".9")  # Go accepts a fraction after seconds even if unwritten

_PATTERNS = {
    "2006": r"\d{4}", "06": r"\d\d", "01": r"\d\d", "1": r"\d\d?", "02": r"\d\d",
    "2": r"\d\d?", "_2": r"[ \d]\d", "002": r"\d{3}", "__2": r"[ \d]{2}\d", "15": r"\d\d",
    "03": r"\d\d", "3": r"\d\d?", "04": r"\d\d", "4": r"\d\d?", "05": r"\d\d", "5": r"\d\d?",
    "January": "|".join(_MONTHS), "Jan": "|".join(m[:3] for m in _MONTHS),
    "Monday": "|".join(_DAYS), "Mon": "|".join(d[:3] for d in _DAYS),
    "PM": "AM|PM", "pm": "am|pm", "MST": r"[A-Z][A-Za-z]{2,4}|[+-]\d\d(?:\d\d)?",
}


def _pattern(token: str) -> str:
    if token in _PATTERNS:
        return _PATTERNS[token]
    if token[0] in ".,":
        if token[1] == "9":
            return r"(?:[.,]\d+)?"
        return re.escape(token[0]) + r"\d{%d}" % (len(token) - 1)
    numeric = "[+-]" + re.sub(r"\d\d", r"\\d\\d", token[1:])
    return "Z|" + numeric if token[0] == "Z" else numeric


@lru_cache(maxsize=64)
def _parser(layout: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    parts: list[str] = []
    tokens: list[str] = []
    items = chunks(layout)
    for index, chunk in enumerate(items):
        if isinstance(chunk, str):
            parts.append(re.escape(chunk))
            continue
        following = items[index + 1] if index + 1 < len(items) else ""
        extra = [_OPTIONAL_FRACTION] if chunk.text in ("05", "5") and not (
            isinstance(following, Token) and following.text[0] in ".,") else []
        for token in (chunk, *extra):
            parts.append(f"({_pattern(token.text)})")
            tokens.append(token.text)
    return re.compile("".join(parts)), tuple(tokens)


def parse_time(value: str | None, layout: str = "") -> float | None:
    """Parse a timestamp written with ``layout`` back to epoch seconds.

    ``None``, ``""`` and ``"null"`` mean "unset" (as the original's JSON decoding).
    Without a zone in the layout the time is local (Go's ``ParseInLocation(Local)``);
    missing date elements default to 1970-01-01. Raises ValueError when it does not fit.
    """
    if value is None or value in ("", "null"):
        return None
    regex, tokens = _parser(layout or RFC3339)
    match = regex.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} does not match the layout {layout or RFC3339!r}")
    fields: dict[str, Any] = {}
    for token, text in zip(tokens, match.groups()):
        if text:
            _read(token, text, fields)
    return _epoch(fields)


_FIELDS = {
    "1": "month", "01": "month", "2": "day", "_2": "day", "02": "day", "002": "yday",
    "__2": "yday", "15": "hour", "3": "hour12", "03": "hour12", "4": "minute", "04": "minute",
    "5": "second", "05": "second",
}


def _read(token: str, text: str, fields: dict[str, Any]) -> None:
    if token in ("2006", "06"):
        year = int(text)
        fields["year"] = year if token == "2006" else year + (1900 if year >= 69 else 2000)
    elif token in ("January", "Jan"):
        fields["month"] = [m[: len(text)] for m in _MONTHS].index(text) + 1
    elif token in _FIELDS:
        fields[_FIELDS[token]] = int(text)
    elif token in ("PM", "pm"):
        fields["pm"] = text.upper() == "PM"
    elif token[0] in ".,":
        fields["nanos"] = int((text[1:] + "000000000")[:9])
    elif token == "MST" and text[0] not in "+-":
        fields["zone"] = text
    elif token not in ("Monday", "Mon"):  # weekdays are ignored, as in Go
        fields["offset"] = 0 if text == "Z" else _offset(text)


def _offset(text: str) -> int:
    digits = text[1:].replace(":", "").ljust(6, "0")
    seconds = int(digits[:2]) * 3600 + int(digits[2:4]) * 60 + int(digits[4:6])
    return -seconds if text[0] == "-" else seconds


def _local_named(moment: datetime, abbreviation: str) -> float | None:
    """The local time ``moment`` in the zone called ``abbreviation`` then (PDT or PST...)."""
    for isdst in (-1, 0, 1):
        seconds = time.mktime(moment.timetuple()[:8] + (isdst,))
        if time.localtime(seconds).tm_zone == abbreviation:
            return seconds
    return None


def _epoch(f: dict[str, Any]) -> float:
    year = f.get("year", 1970)
    if "yday" in f and "month" not in f:
        if not 1 <= f["yday"] <= 366:
            raise ValueError(f"day of year {f['yday']} out of range 1..366")
        day = date(year, 1, 1) + timedelta(days=f["yday"] - 1)
        month, mday = day.month, day.day
    else:
        month, mday = f.get("month", 1), f.get("day", 1)
    hour = f.get("hour", 0)
    if "hour12" in f:
        if not 1 <= f["hour12"] <= 12:
            raise ValueError(f"hour {f['hour12']} out of range 1..12")
        hour = f["hour12"] % 12 + (12 if f.get("pm") else 0)
    moment = datetime(year, month, mday, hour, f.get("minute", 0), f.get("second", 0))
    if "zone" in f:  # as Go: a local zone's name means local time; any other name, offset 0
        local = _local_named(moment, f["zone"])
        seconds = calendar.timegm(moment.timetuple()) if local is None else local
    elif "offset" in f:
        seconds = calendar.timegm(moment.timetuple()) - f["offset"]
    else:
        seconds = time.mktime(moment.timetuple()[:8] + (-1,))
    return seconds + f.get("nanos", 0) / 1e9


def validate_layout(layout: str) -> str | None:
    """Why ``layout`` cannot be a timestamp layout, or None when it is fine.

    Go accepts any string, but a layout without reference elements prints the same
    text for every time; the common slips (a layout's *name*, strftime codes) are named.
    """
    if layout == "":
        return None
    if layout in LAYOUTS:
        return f'"{layout}" is the name of a Go layout; write the layout itself: "{LAYOUTS[layout]}"'
    if re.search(r"%[A-Za-z]", layout):
        return ("looks like a strftime format; write a Go layout, the reference time "
                f'"Mon Jan 2 15:04:05 MST 2006" as you want it shown, e.g. "{RFC3339}"')
    if not any(isinstance(c, Token) for c in chunks(layout)):
        return f'has no date or time element (got "{layout}"); e.g. "{RFC3339}"'
    return None
