"""Durations with units: what every duration option of `poolsim` accepts."""

from __future__ import annotations

import argparse

import pytest

from pool.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1d2h", 93_600.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1.5m", 90.0),
        ("90", 90.0),
        ("0.5", 0.5),
        (" 10S ", 10.0),
        ("0", 0.0),
    ],
)
def test_accepted(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected seconds"),
        ("ten", "expected seconds"),
        ("5x", "expected seconds"),
        ("5m3", "expected seconds"),
        ("m5", "expected seconds"),
        ("30m1h", "largest down"),
        ("1m1m", "largest down"),
        ("-5", "negative"),
        ("inf", "infinite"),
        ("nan", "negative or infinite"),
    ],
)
def test_refused_with_what_is_accepted(text: str, why: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=why):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.5, 30.0, 60.0, 90.0, 300.0, 5400.0, 86_400.0, 93_661.0])
def test_format_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_is_short() -> None:
    assert [format_duration(s) for s in (0.5, 30, 300, 5400)] == ["0.5s", "30s", "5m", "1h30m"]
