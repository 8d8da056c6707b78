"""The one strict JSON decoder: what Patrol reads from others is JSON, and only JSON.

Python's parser accepts ``NaN``, ``Infinity`` and numbers beyond a float's range
(``1e999`` becomes infinity). Key/values come back out in answers, and an answer with
``NaN`` in it is not JSON: every strict client would fail on it. A config file with
them would put them in the state file. So every decoder of outside JSON (API bodies,
UDP datagrams, the config file) refuses them here, with the same words.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not valid JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def decoder(object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> json.JSONDecoder:
    """A strict decoder (``raw_decode`` for a document followed by other text)."""
    return json.JSONDecoder(object_pairs_hook=object_pairs_hook, parse_float=_finite, parse_constant=_not_json)


#: one decoder for every call: ``json.loads`` with hooks builds a decoder and its scanner
#: per call, a tenth of the work of decoding a ping (the decoder keeps no state between calls)
_DECODER = decoder()


def loads(data: bytes | str) -> Any:
    """Strict JSON; raises ``ValueError`` (``UnicodeDecodeError`` for bytes that are not
    UTF-8 text) or ``RecursionError`` (nested too deeply). Bytes are read as ``json.loads``
    reads them (UTF-8, -16 or -32, told apart by their first bytes)."""
    if isinstance(data, (bytes, bytearray)):
        # an object that starts with "{" and a non-zero byte is UTF-8 to detect_encoding
        # (no BOM starts so, nor UTF-16 or -32): every request, told at once
        utf8 = data[:1] == b"{" and data[1:2] != b"\0"
        data = data.decode("utf-8" if utf8 else json.detect_encoding(data), "surrogatepass")
    elif not isinstance(data, str):
        raise TypeError(f"the JSON object must be str, bytes or bytearray, not {type(data).__name__}")
    elif data.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", data, 0)
    if not data.startswith("{"):
        return _DECODER.decode(data)
    # JSONDecoder.decode without its two whitespace matches where there is none to skip
    # (every request): the same value, the same errors
    value, end = _DECODER.raw_decode(data)
    if end != len(data):
        end = len(data) - len(data[end:].lstrip(" \t\n\r"))  # past JSON's whitespace, as decode() skips it
        if end != len(data):
            raise json.JSONDecodeError("Extra data", data, end)
    return value
