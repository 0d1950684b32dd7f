"""Tests for chamberlain.config.units: durations and sizes, read and written back.

The common forms and their messages are covered in tests/test_config.py; these are
the remaining corners of the syntax, and format_duration, which messages use to
quote a duration in the user's own terms.
"""

import re

import pytest

from chamberlain.config.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h, 30m", 5400.0),
        ("1h,30m", 5400.0),
        (".5s", 0.5),
        ("2.", 2.0),
        ("1.5 msec", 0.0015),
        ("2 hrs 1 min", 7260.0),
        ("1 Week", 604800.0),
    ],
)
def test_parse_duration_accepts_the_rarer_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_always_returns_seconds_as_float() -> None:
    seconds = parse_duration(3)
    assert seconds == 3.0
    assert type(seconds) is float


def test_parse_duration_refuses_a_sum_too_large_to_represent() -> None:
    text = "9" * 400 + "w"
    with pytest.raises(ValueError, match="^" + re.escape(f"duration {text!r} is too large") + "$"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1h,,30m", "invalid duration '1h,,30m'"),
        ("1h30mm", "invalid duration '1h30mm': unknown unit 'mm'"),
        ("+5s", "invalid duration '+5s'"),
        ({"s": 1}, "expected a duration, got a mapping"),
    ],
)
def test_parse_duration_rejects_near_misses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1TB", 1000**4),
        ("1TiB", 1024**4),
        ("1kib", 1024),
        ("1Kb", 1000),  # always bytes, never bits
        (".5KiB", 512),
        ("  7 B  ", 7),
    ],
)
def test_parse_size_accepts_the_rarer_forms(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_always_returns_whole_bytes_as_int() -> None:
    size = parse_size(4096.0)
    assert size == 4096
    assert type(size) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("   ", "size is empty"),
        ("1.5", "size '1.5' is not a whole number of bytes"),
        ("1PB", "invalid size '1PB': unknown unit 'PB'"),
        ("1 K B", "invalid size '1 K B'"),
        (None, "expected a size, got null"),
    ],
)
def test_parse_size_rejects_near_misses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_size(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "0.25s"),
        (1, "1s"),
        (90, "1m30s"),
        (90.5, "90.5s"),
        (3600, "1h"),
        (5400.0, "1h30m"),
        (86400, "1d"),
        (90061, "1d1h1m1s"),
        (604800, "7d"),
    ],
)
def test_format_duration_says_it_like_a_config_file(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    "seconds",
    [0, 0.001, 0.25, 1, 1.5, 59, 60, 61, 3599, 3601, 86399, 90061, 1209601, 31536000],
)
def test_format_duration_reads_back_as_the_same_duration(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("seconds", [100000.5, 1000000.5, 0.000015, 86400.25])
def test_a_fractional_duration_of_any_size_reads_back_exactly(seconds: float) -> None:
    text = format_duration(seconds)
    assert "e" not in text
    assert parse_duration(text) == seconds
