"""Go time layouts: formatting as Go's time.Format, parsing back (spec §7.7, §11 scenario 9)."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patrol.util.gotime import LAYOUTS, RFC1123Z, RFC3339, chunks, format_time, parse_time, validate_layout

#: 2018-07-19T01:43:44Z, the instant of the spec's RFC1123Z example.
EXAMPLE = 1531964624
#: Go's reference time, Mon Jan 2 15:04:05 MST 2006 (-0700), plus a fraction.
REFERENCE = 1136239445.123456


@pytest.fixture
def tz(monkeypatch):
    """Set the local time zone for one test (Go's Local follows TZ the same way)."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("layout,expected", [
    (RFC1123Z, "Wed, 18 Jul 2018 18:43:44 -0700"),
    (RFC3339, "2018-07-18T18:43:44-07:00"),
    ("", "2018-07-18T18:43:44-07:00"),
    (LAYOUTS["UnixDate"], "Wed Jul 18 18:43:44 PDT 2018"),
    (LAYOUTS["ANSIC"], "Wed Jul 18 18:43:44 2018"),
    (LAYOUTS["RFC850"], "Wednesday, 18-Jul-18 18:43:44 PDT"),
    (LAYOUTS["Kitchen"], "6:43PM"),
    ("Monday 2 January 2006, 3:04:05 pm", "Wednesday 18 July 2018, 6:43:44 pm"),
    ("day 002 of 2006", "day 199 of 2018"),
])
def test_format_in_a_zone_with_daylight_saving(tz, layout, expected):
    tz("America/Los_Angeles")
    assert format_time(EXAMPLE, layout) == expected


def test_utc_prints_z_only_in_the_iso_forms(tz):
    tz("UTC")
    assert format_time(EXAMPLE, RFC3339) == "2018-07-19T01:43:44Z"
    assert format_time(EXAMPLE, "Z0700 Z07 -0700 -07:00 MST") == "Z Z +0000 +00:00 UTC"


# Every reference element printed for the reference time gives itself back (that is how
# Go layouts work), except the ones that show padding, zones or fractions differently.
@pytest.mark.parametrize("layout,expected", [
    ("2006", "2006"), ("06", "06"), ("Jan", "Jan"), ("January", "January"), ("01", "01"),
    ("1", "1"), ("Mon", "Mon"), ("Monday", "Monday"), ("02", "02"), ("2", "2"), ("_2", " 2"),
    ("002", "002"), ("__2", "  2"), ("15", "15"), ("03", "03"), ("3", "3"), ("04", "04"),
    ("4", "4"), ("05", "05"), ("5", "5"), ("PM", "PM"), ("pm", "pm"), ("MST", "MST"),
    ("Z07:00", "-07:00"), ("Z0700", "-0700"), ("Z07", "-07"), ("Z07:00:00", "-07:00:00"),
    ("-07:00", "-07:00"), ("-0700", "-0700"), ("-07", "-07"), ("-070000", "-070000"),
    (".000", ".123"), (".000000", ".123456"), (",000", ",123"), (".999", ".123"), (".9", ".1"),
    ("05.00", "05.12"), (".0001", ".0001"),  # a fraction must not run into more digits
    ("Janet", "Janet"), ("Month", "Month"), ("_2006", "_2006"), ("T", "T"), ("Z", "Z"),
])
def test_each_reference_token(tz, layout, expected):
    tz("MST7")
    assert format_time(REFERENCE, layout) == expected


def test_trimmed_fractions_vanish_when_zero(tz):
    tz("UTC")
    assert format_time(EXAMPLE, LAYOUTS["RFC3339Nano"]) == "2018-07-19T01:43:44Z"
    assert format_time(EXAMPLE + 0.5, LAYOUTS["RFC3339Nano"]) == "2018-07-19T01:43:44.5Z"
    assert format_time(EXAMPLE + 0.5, LAYOUTS["StampMilli"]) == "Jul 19 01:43:44.500"
    assert format_time(EXAMPLE + 0.9999999999, "05.000") == "45.000"  # rounds into the next second


def test_layout_chunks_follow_go():
    assert [c if isinstance(c, str) else f"<{c.text}>" for c in chunks("2006-01-02T15:04:05Z07:00")] == [
        "<2006>", "-", "<01>", "-", "<02>", "T", "<15>", ":", "<04>", ":", "<05>", "<Z07:00>"]


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Kolkata"])
@pytest.mark.parametrize("name", ["RFC3339", "RFC1123Z", "UnixDate", "RFC1123", "RubyDate", "ANSIC",
                                  "RFC850", "DateTime"])
def test_round_trip(tz, zone, name):
    tz(zone)
    layout = LAYOUTS[name]
    for ts in (EXAMPLE, 0, 1700000000, 951782400):  # 2000-02-29 too
        assert parse_time(format_time(ts, layout), layout) == ts


@contextmanager
def local_zone(name: str):
    old = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@settings(max_examples=300, deadline=None)
@given(ts=st.integers(min_value=0, max_value=4_102_444_800),
       name=st.sampled_from(["RFC3339", "RFC1123Z", "UnixDate"]),
       zone=st.sampled_from(["UTC", "America/Los_Angeles", "Europe/Berlin", "Australia/Lord_Howe"]))
def test_round_trip_any_time(ts, name, zone):
    """Layouts with a zone round-trip at any time, daylight saving changes included."""
    with local_zone(zone):
        assert parse_time(format_time(ts, LAYOUTS[name]), LAYOUTS[name]) == ts


def test_fractions_round_trip(tz):
    tz("Europe/Berlin")
    layout = "2006-01-02 15:04:05.000 -0700"
    assert parse_time(format_time(EXAMPLE + 0.25, layout), layout) == EXAMPLE + 0.25
    assert parse_time("2018-07-19T01:43:44.5Z", RFC3339) == EXAMPLE + 0.5  # Go accepts an unwritten fraction


@pytest.mark.parametrize("value", [None, "", "null"])
def test_unset(value):
    assert parse_time(value, RFC3339) is None


@pytest.mark.parametrize("value,layout", [
    ("yesterday", RFC3339), ("2018-13-01T00:00:00Z", RFC3339), ("2018-02-30T00:00:00Z", RFC3339),
    ("Wed, 18 Jul 2018 18:43:44", RFC1123Z), ("13:04PM", LAYOUTS["Kitchen"]),
])
def test_parse_rejects_what_does_not_fit(value, layout):
    with pytest.raises(ValueError):
        parse_time(value, layout)


def test_parse_a_zone_abbreviation(tz):
    tz("America/Los_Angeles")
    assert parse_time("Wed Jul 18 18:43:44 PDT 2018", LAYOUTS["UnixDate"]) == EXAMPLE
    assert parse_time("Thu Jul 19 01:43:44 UTC 2018", LAYOUTS["UnixDate"]) == EXAMPLE
    assert parse_time("Thu Jul 19 01:43:44 XYZ 2018", LAYOUTS["UnixDate"]) == EXAMPLE  # unknown: offset 0, as Go


@pytest.mark.parametrize("layout", ["", RFC3339, RFC1123Z, *LAYOUTS.values(), "2006.01.02", "15h04"])
def test_valid_layouts(layout):
    assert validate_layout(layout) is None


@pytest.mark.parametrize("layout,fragment", [
    ("RFC1123Z", 'is the name of a Go layout; write the layout itself: "Mon, 02 Jan 2006 15:04:05 -0700"'),
    ("%Y-%m-%d %H:%M:%S", "looks like a strftime format"),
    ("timestamp", 'has no date or time element (got "timestamp")'),
])
def test_invalid_layouts(layout, fragment):
    assert fragment in validate_layout(layout)
