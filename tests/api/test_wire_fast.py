"""The API's wire format takes shortcuts on a ping's path (thousands a second), with the
same results as the long way: :func:`patrol.api.wire.validate_request` passes the usual
fields on their exact type alone, and compact answers are encoded by a C encoder made
once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patrol.api import wire
from patrol.util import strictjson

VALUES: list[Any] = ["a", "é", "\ud800", "", 0, 1, -1, 255, 256, 2**32 - 1, 2**32, 2**64 - 1, 2**64, True, False,
                     None, 1.5, {}, [], {"a": 1}, {"\ud800": 1}]


@pytest.mark.parametrize("key", [*wire.FIELDS, "nope", "\ud800", "ID"])
def test_the_quick_verdict_is_the_whole_checks(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    quick = [wire.validate_request({key: value}) for value in VALUES]
    monkeypatch.setattr(wire, "_SIMPLE", {})  # every field through the whole check
    assert quick == [wire.validate_request({key: value}) for value in VALUES]


def test_compact_answers_are_the_json_encoders_with_the_originals_escapes() -> None:
    body = {"a": 1, "b": [1.5, "é<>&", None, True, {"x": 1e300, "n": float("nan"), "i": float("inf")}],
            "c": 2**70, "d": "\ud800", 7: 1, True: 2, None: 3, 1.5: 4, "e": {}, "f": [], "g": -0.0}
    for value in (body, {}, {"id": "u0", "cas": 12, "ready": False}):
        text = wire._COMPACT.encode(value)
        assert wire.dumps(value, pretty=False) == text.replace("<", "\\u003c").replace(">", "\\u003e").replace(
            "&", "\\u0026").encode()
    with pytest.raises(TypeError):
        wire.dumps({"x": object()}, pretty=False)
    assert wire.dumps({"x": 1}, pretty=False) == b'{"x":1}'  # nothing kept from the failed one


@pytest.mark.parametrize("second", range(256))
def test_a_body_starting_with_a_brace_is_read_as_json_loads_reads_it(second: int) -> None:
    """:func:`patrol.util.strictjson.loads` tells UTF-8 at once from ``{`` and a non-zero byte."""
    for data in (bytes([0x7B, second]), bytes([0x7B, second, 0, 0]), bytes([0x7B, second, 0x7D, 0x7D]),
                 '{"é":1}'.encode("utf-16-le"), '{"é":1}'.encode("utf-32-le"), b'{"a":"\xed\xa0\x80"}'):
        try:
            expected: object = json.loads(data)
        except ValueError as exc:
            expected = type(exc)
        try:
            got: object = strictjson.loads(data)
        except ValueError as exc:
            got = type(exc)
        assert got == expected or (got is expected is not None), data


@pytest.mark.parametrize("text", ['{"a":1}', '{"a":1} \n', '{"a":1} x', '{"a":1}{}', '{', '{"a":}', '{"a":1', '{}  ]',
                                  ' {"a":1}', '{"a":NaN}', '{"a":1e999}', '{"a":"\\ud800"}', '{"a":[1,{"b":null}]}\t'])
def test_an_object_is_decoded_as_the_decoder_decodes_it(text: str) -> None:
    """:func:`patrol.util.strictjson.loads` skips the decoder's whitespace matches for an
    object: the same values, and the same errors, with the same messages."""
    def outcome(decode: Any) -> object:
        try:
            return decode(text)
        except ValueError as exc:
            return type(exc), str(exc)

    assert outcome(strictjson.loads) == outcome(strictjson._DECODER.decode)
    assert outcome(lambda t: strictjson.loads(t.encode("utf-8", "surrogatepass"))) == outcome(
        strictjson._DECODER.decode)
