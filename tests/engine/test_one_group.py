"""The groups of a run that made none of its own are a read-only one-item mapping
(OneGroup, ~50 bytes instead of a ~220-byte dict per app): it must answer as the
dict it replaces, and Instance.groups is replaced whole, never changed in place."""

from __future__ import annotations

import json

from patrol.engine.app_instance import NO_GROUPS, OneGroup


def test_one_group_answers_as_the_dict_it_replaces() -> None:
    for leader in (1_700_000_000_123, None):
        one, as_dict = OneGroup(4242, leader), {4242: leader}
        assert one == as_dict and dict(one) == as_dict and len(one) == 1
        assert 4242 in one and 4243 not in one and one.get(4243) is None and one[4242] == leader
        assert sorted(one) == [4242] and list(one.items()) == [(4242, leader)]
        assert one.keys() - {4242} == set() and {**one, 7: None} == {4242: leader, 7: None}
        assert json.dumps({str(g): s for g, s in sorted(one.items())}) == json.dumps({"4242": leader})
    assert dict(NO_GROUPS) == {} and not NO_GROUPS
