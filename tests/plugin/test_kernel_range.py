"""A plugin's kernel range is judged without ``packaging`` in the plain form, and the
judgement is the one ``packaging`` would give.

The plain form (``patrol>=0.2,<0.3`` and a release kernel) is decided with release
numbers alone so that a running Patrol never imports ``packaging``; anything else
(markers, extras, ``~=``, wildcards, pre-releases, another distribution's name that is
not plain) goes to ``packaging`` as before. These tests hold the two to the same answer.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.version import Version

from patrol.plugin.versions import _plain_fit, kernel_misfit

RELEASES = st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=4).map(
    lambda parts: ".".join(map(str, parts)))
CLAUSES = st.tuples(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), RELEASES,
                    st.sampled_from(["", " "])).map(lambda c: f"{c[2]}{c[0]}{c[2]}{c[1]}")


def packaging_fit(line: str, kernel: str) -> bool:
    requirement = Requirement(line)
    return requirement.specifier.contains(Version(kernel), prereleases=True)


@settings(max_examples=400, deadline=None)
@given(kernel=RELEASES, clauses=st.lists(CLAUSES, min_size=1, max_size=3),
       name=st.sampled_from(["patrol", "Patrol", "PATROL"]))
def test_the_plain_form_agrees_with_packaging(kernel, clauses, name):
    line = name + ",".join(clauses)
    assert _plain_fit(line, kernel) is packaging_fit(line, kernel), (line, kernel)


def test_what_is_not_plain_is_left_to_packaging():
    for line in ("patrol~=0.2", "patrol==0.2.*", "patrol>=0.2; python_version >= '3'",
                 "patrol[extra]>=0.2", "patrol (>=0.2)", "patrol", "patrol>=0.2rc1", "patrol>=0.2,<"):
        assert _plain_fit(line, "0.2.0") is None, line
    assert _plain_fit("patrol>=0.2,<0.3", "0.3.0.dev1") is None  # a development kernel: packaging's rules


def test_other_distributions_do_not_judge_the_kernel():
    for line in ("structlog>=24", "patrol-extras<0.1", "patrol.ext==9", "Patrolx<0.1"):
        assert _plain_fit(line, "0.2.0") is True, line
    assert _plain_fit("Patrol_>=9", "0.2.0") is True  # not the kernel's name, as packaging would also say


class Dist:
    """The two attributes :func:`kernel_misfit` reads from a distribution's metadata."""

    name = "patrol-ranged"
    version = "0.9"

    def __init__(self, *requires: str) -> None:
        self.requires = list(requires)


def test_a_plain_misfit_still_gets_packagings_message():
    message = kernel_misfit(Dist("structlog", "patrol>=0.3,<0.4"), "0.2.0")  # type: ignore[arg-type]
    assert message == ("patrol-ranged 0.9 is written for patrol<0.4,>=0.3, but this is patrol 0.2.0: "
                       "install a release of patrol-ranged made for patrol 0.2.x")


def test_a_fitting_plain_range_and_an_unreadable_one():
    assert kernel_misfit(Dist("patrol>=0.2,<0.3"), "0.2.7") is None  # type: ignore[arg-type]
    assert "unreadable kernel requirement" in (kernel_misfit(Dist("patrol>=0.2,<"), "0.2.0") or "")  # type: ignore[arg-type]
