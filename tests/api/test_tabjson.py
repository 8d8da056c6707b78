"""The fast TAB-indented writer is byte for byte the standard library's ``indent="\\t"``.

``/status/`` and every API answer are written by :mod:`patrol.api.tabjson` instead of
``json.dumps(..., indent="\\t")``; clients of the original parse those bytes (and some
diff them), so the writer must never differ in a single byte: these tests compare the
two on generated trees of every kind of value an answer can hold, and on the values the
writer leaves to the standard library.
"""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from typing import Any

import pytest

from patrol.api import tabjson
from patrol.api.wire import dumps, pretty

TEXT = ["", "plain", "é ü ß", "\u2028\u2029", "tab\tnew\nline", 'quo"te\\back', "<b>&amp;</b>", "\x00\x1f\x7f",
        "\U0001f600 emoji", "日本語"]
NUMBERS: list[Any] = [0, -1, 2**63, -(10**30), 0.0, -0.0, 0.1, 1e300, 1e-300, 3.141592653589793, 12345.678,
                      float("nan"), float("inf"), float("-inf"), True, False, None]


def tree(rng: random.Random, depth: int = 0) -> Any:
    """A random answer-shaped value: dicts and lists of strings, numbers, booleans, null."""
    kind = rng.randrange(6 if depth < 4 else 3)
    if kind == 0:
        return rng.choice(TEXT)
    if kind in (1, 2):
        return rng.choice(NUMBERS)
    if kind in (3, 4):
        return {rng.choice(TEXT) + str(i): tree(rng, depth + 1) for i in range(rng.randrange(5))}
    return [tree(rng, depth + 1) for _ in range(rng.randrange(5))]


def stdlib(value: Any, level: int = 0) -> str:
    text = json.dumps(value, indent="\t")
    return text.replace("\n", "\n" + "\t" * level)


def test_generated_trees_are_written_byte_for_byte_as_the_standard_library_writes_them():
    rng = random.Random(18)
    for _ in range(3000):
        value = tree(rng)
        for level in (0, 1, 2):
            assert tabjson.dumps(value, level) == stdlib(value, level)


def test_an_item_as_the_api_renders_it_is_unchanged():
    item = {"instance-id": "0e6f1c2a", "name": "App <1> & é", "pid": 4242, "started": "2026-11-30T18:00:00Z",
            "lastseen": "2026-11-30T18:00:01.5+01:00", "history": [
                {"instance-id": "x", "pid": 1, "exit-code": 1, "reason": "exited <oops>", "keyvalue": {"j": [1, {}]}},
                {}],
            "keyvalue": {"k<&>": [1, {"t": "ü\u2028", "nested": {"deep": [[], {}, [None, 1.5]]}}]},
            "secret": True, "cas": 77, "state": "running", "uptime": 12.0, "cpu-percent": 0.1, "rss-bytes": 1 << 20}
    assert pretty(item, level=2) == stdlib(item, 2).replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026")
    assert dumps(item) == (json.dumps(item, indent="\t") + "\n").replace("<", "\\u003c").replace(
        ">", "\\u003e").replace("&", "\\u0026").encode()


class Text(str):
    pass


class Number(int):
    pass


@pytest.mark.parametrize("value", [
    {1: "int key"}, {None: 1, True: 2, 1.5: 3}, [Text("a str subclass")], {"n": Number(3)}, OrderedDict(a=1),
    (1, [2, (3,)]), {"deep": [[[[[[[[1]]]]]]]]},
])
def test_values_outside_the_fast_path_still_come_out_as_the_standard_library_writes_them(value: Any):
    for level in (0, 3):
        assert tabjson.dumps(value, level) == stdlib(value, level)


def test_what_the_standard_library_refuses_is_still_refused():
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError):
        tabjson.dumps(loop)
    with pytest.raises(TypeError):
        tabjson.dumps({"a": object()})
