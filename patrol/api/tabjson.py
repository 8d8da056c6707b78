"""The original's TAB-indented JSON, written fast: byte for byte ``json.dumps(v, indent="\\t")``.

The standard library's C encoder only writes compact JSON; any ``indent`` makes
``json.dumps`` fall back to its pure-Python encoder, which builds a new set of closures
on every call and walks every value through generators: half of the time of a
``/status/`` answer at 500 apps. API answers are small trees of dicts, lists, strings,
numbers and booleans, so this writer handles exactly those (strings through the C
string escaper) and hands anything else (a subclass, a non-string key) to ``json.dumps``
itself, so the output is always the standard library's.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any, Callable

_string = encode_basestring_ascii  # the C escaper (ensure_ascii, as json.dumps's default)
_int = int.__repr__
_float = float.__repr__
_INFINITY = float("inf")


class _Unusual(Exception):
    """A value this writer leaves to ``json.dumps``."""


def dumps(value: Any, level: int = 0) -> str:
    """``json.dumps(value, indent="\\t")``, with every line after the first indented by
    ``level`` more TABs (to be placed that deep in a bigger document)."""
    out: list[str] = []
    try:
        _write(value, "\n" + "\t" * level, out)
    except (_Unusual, RecursionError):
        text = json.dumps(value, indent="\t")
        return text.replace("\n", "\n" + "\t" * level) if level else text
    return "".join(out)


def scalar(value: Any) -> str:
    """``dumps(value)`` for a number, string, boolean or null, with less work."""
    write = _SCALARS.get(type(value))
    return dumps(value) if write is None else write(value)


def _write(value: Any, newline: str, out: list[str]) -> None:
    kind = type(value)
    if kind is dict:
        if not value:
            out.append("{}")
            return
        inner = newline + "\t"
        separator = "{" + inner
        for key, item in value.items():
            if type(key) is not str:
                raise _Unusual  # json.dumps turns such keys into strings its own way
            write = _SCALARS.get(type(item))
            if write is None:
                out.append(separator + _string(key) + ": ")
                _write(item, inner, out)
            else:
                out.append(separator + _string(key) + ": " + write(item))
            separator = "," + inner
        out.append(newline + "}")
    elif kind is list or kind is tuple:
        if not value:
            out.append("[]")
            return
        inner = newline + "\t"
        separator = "[" + inner
        for item in value:
            write = _SCALARS.get(type(item))
            if write is None:
                out.append(separator)
                _write(item, inner, out)
            else:
                out.append(separator + write(item))
            separator = "," + inner
        out.append(newline + "]")
    else:
        write = _SCALARS.get(kind)
        if write is None:
            raise _Unusual
        out.append(write(value))


def _float_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return _float(value)


float_text = _float_text  # (the status cache writes its live floats with it)

#: how each kind of scalar is written, by its exact type (a subclass is _Unusual)
_SCALARS: dict[type, Callable[[Any], str]] = {
    str: _string,
    int: _int,
    float: _float_text,
    bool: {True: "true", False: "false"}.__getitem__,
    type(None): {None: "null"}.__getitem__,
}
