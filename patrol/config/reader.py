"""Reading one object of a config document: typed, case-insensitive, nothing lost.

Every problem is recorded in a :class:`Report` and reading goes on, so a user sees all
mistakes of a file in one run. Keys match case-insensitively, as Go's JSON decoder
matched them, so configs of the original keep loading; whatever no rule read is
reported as a likely typo.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping


class Report:
    """Errors and warnings, each a full line naming the file and the key's path."""

    def __init__(self, source: str, base_dir: str = "") -> None:
        self.source = source
        #: the config file's directory, what ``${CONFIG_DIR}`` expands to ("" = unknown)
        self.base_dir = base_dir
        self.errors: list[str] = []
        self.warnings: list[str] = []
        #: tuples of texts the items of this load share (see patrol.config.items._shared)
        self.texts: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def line(self, path: str, message: str) -> str:
        return f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}"

    def error(self, path: str, message: str) -> None:
        self.errors.append(self.line(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(self.line(path, message))


def child(path: str, key: str | int) -> str:
    """The path of ``key`` below ``path``: ``apps.web``, ``args[2]``, ``apps["a.b"]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if re.fullmatch(r"[0-9A-Za-z_-]+", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    """A value as JSON, shortened, for "(got ...)" in messages."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


#: keys whose values are never repeated in a message (it may reach a log or a terminal)
SECRET_KEYS = frozenset({"secret", "token", "password"})


def got(value: Any, *, hide: bool = False) -> str:
    """``(got number 5)``: the JSON type too, since the type is usually what is wrong.

    ``hide``: only the type, for values that may be secrets.
    """
    kind = json_type(value)
    return f"(got {kind})" if kind == "null" or hide else f"(got {kind} {show(value)})"


def nesting(value: Any) -> int:
    """How deep arrays and objects are nested in ``value``: level by level, never
    recursively, so any depth can be measured."""
    depth, level = 0, [value]
    while containers := [v for v in level if isinstance(v, (dict, list))]:
        depth += 1
        level = [item for v in containers for item in (v.values() if isinstance(v, dict) else v)]
    return depth


def warn_duplicates(report: Report, path: str, data: Mapping[str, Any]) -> None:
    """Keys the JSON decoder saw twice in ``data`` (it keeps the last value, as Go)."""
    for key in getattr(data, "duplicates", ()):
        report.warn(child(path, key), "is given more than once; the last value is used")


@dataclass(frozen=True)
class Kind:
    """A JSON type a key accepts; ``convert`` turns an accepted value into the model's."""

    name: str
    accepts: Callable[[Any], bool]
    convert: Callable[[Any], Any] = lambda value: value


def is_int(value: Any) -> bool:
    """JSON integers only: ``true`` is not 1, and ``1.0`` is not an integer (as in Go)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (is_int(value) and abs(value) < 2**63) or (isinstance(value, float) and math.isfinite(value))


#: the one empty read-only mapping that every item without such keys shares: a config of
#: thousands of apps would otherwise keep an empty dict and its proxy per key per app
EMPTY_MAPPING: MappingProxyType[str, Any] = MappingProxyType({})


def frozen_mapping(values: Mapping[str, Any]) -> MappingProxyType[str, Any]:
    """``values`` read-only (a copy when not empty; :data:`EMPTY_MAPPING` when empty)."""
    return MappingProxyType(dict(values)) if values else EMPTY_MAPPING


STRING = Kind("a string", lambda v: isinstance(v, str))
BOOL = Kind("true or false", lambda v: isinstance(v, bool))
INT = Kind("an integer", is_int)
NUMBER = Kind("a number", is_number, float)
OBJECT = Kind("an object", lambda v: isinstance(v, dict))
MAPPING = Kind("an object", lambda v: isinstance(v, dict), frozen_mapping)
NAME_OR_INT = Kind("a name or an integer", lambda v: isinstance(v, str) or is_int(v))
ANY = Kind("any value", lambda v: True)

_TYPE_NAMES = {str: "a string", bool: "true or false", int: "an integer", float: "a number",
               list: "an array", dict: "an object"}


def kind_of(types: type | tuple[type, ...]) -> Kind:
    """The Kind of a plugin option's declared Python type(s)."""
    types = types if isinstance(types, tuple) else (types,)
    names = " or ".join(_TYPE_NAMES.get(t, getattr(t, "__name__", str(t)))
                        for t in types if not (t is int and float in types))  # ints are numbers

    def accepts(value: Any) -> bool:
        if isinstance(value, bool) and bool not in types:
            return False
        if float in types and isinstance(value, (int, float)):
            return is_number(value)
        return isinstance(value, types)

    def convert(value: Any) -> Any:
        return float(value) if float in types and is_int(value) and int not in types else value

    return Kind(names, accepts, convert)


class Section:
    """One object of the document being read.

    Getters return the default when a key is absent or ``null`` (Go leaves the zero
    value then), and record an error, also returning the default, when the type is wrong.
    """

    def __init__(self, data: Mapping[str, Any], path: str, report: Report) -> None:
        self.data = data
        self.path = path
        self.report = report
        self._spellings: dict[str, list[str]] = {}
        for key in data:
            self._spellings.setdefault(key.casefold(), []).append(key)
        self._read: set[str] = set()
        self._failed: set[str] = set()
        warn_duplicates(report, path, data)

    def at(self, key: str | int) -> str:
        return child(self.path, key)

    def has(self, key: str) -> bool:
        return key.casefold() in self._spellings

    def failed(self, key: str) -> bool:
        """True when ``key`` had the wrong type (its error is recorded already)."""
        return key.casefold() in self._failed

    def raw(self, key: str) -> Any:
        """The value of ``key``, marking it read. Several spellings: the last wins, as in Go."""
        folded = key.casefold()
        self._read.add(folded)
        spellings = self._spellings.get(folded)
        if not spellings:
            return None
        if len(spellings) > 1:
            listed = ", ".join(json.dumps(s) for s in spellings)
            self.report.warn(self.at(key), f"is given as {listed}; using the last one")
        return self.data[spellings[-1]]

    def get(self, key: str, kind: Kind, default: Any = None) -> Any:
        value = self.raw(key)
        if value is None:
            return default
        if not kind.accepts(value):
            hide = key.casefold() in SECRET_KEYS
            self.report.error(self.at(key), f"must be {kind.name} {got(value, hide=hide)}")
            self._failed.add(key.casefold())
            return default
        return kind.convert(value)

    def strings(self, key: str, check: Callable[[str], str | None] | None = None) -> tuple[str, ...]:
        """A list of strings; each wrong item (type, or ``check``'s rule) is its own error."""
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.report.error(self.at(key), f"must be an array of strings {got(value)}")
            self._failed.add(key.casefold())
            return ()
        for index, item in enumerate(value):
            if not isinstance(item, str):
                problem: str | None = f"must be a string {got(item)}"
            else:
                problem = check(item) if check else None
            if problem:
                self.report.error(child(self.at(key), index), problem)
        return tuple(item for item in value if isinstance(item, str))

    def warn_unread(self) -> None:
        """Warn about every key no rule read: most likely a typo, silently ignored otherwise."""
        known = sorted(self._read)
        for key in self.data:
            if key.casefold() in self._read:
                continue
            import difflib  # here: only a config with an unknown key needs it (it would stay for the daemon's life)

            close = difflib.get_close_matches(key.casefold(), known, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            self.report.warn(self.at(key), f"unknown key, ignored{hint}")
