""":func:`patrol.api.wire.validate_request` passes the usual fields on their exact type
alone (a ping's four fields, thousands of times a second): the same verdicts as the
whole check, for every field and every kind of value."""

from __future__ import annotations

from typing import Any

import pytest

from patrol.api import wire

VALUES: list[Any] = ["a", "é", "\ud800", "", 0, 1, -1, 255, 256, 2**32 - 1, 2**32, 2**64 - 1, 2**64, True, False,
                     None, 1.5, {}, [], {"a": 1}, {"\ud800": 1}]


@pytest.mark.parametrize("key", [*wire.FIELDS, "nope", "\ud800", "ID"])
def test_the_quick_verdict_is_the_whole_checks(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    quick = [wire.validate_request({key: value}) for value in VALUES]
    monkeypatch.setattr(wire, "_SIMPLE", {})  # every field through the whole check
    assert quick == [wire.validate_request({key: value}) for value in VALUES]
