"""Durations with units, as every `poolsim` option that takes a time reads them.

``parse_duration("1h30m") == 5400.0``: a number followed by a unit (``ms``, ``s``, ``m``,
``h``, ``d``), repeated from the largest unit down, or a bare number of seconds (``"90"``,
``"0.5"``). It is an argparse ``type``: a bad value raises ``ArgumentTypeError`` with what was
wrong and what is accepted.
"""

from __future__ import annotations

import argparse
import math
import re

_UNITS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|d|h|m|s)")
_EXPECTED = "expected seconds (90, 0.5) or a duration with units: 30s, 5m, 2h, 1h30m, 250ms"


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ``argparse.ArgumentTypeError`` when it is not a duration."""
    s = text.strip().lower()
    try:
        seconds = float(s)
    except ValueError:
        seconds = _with_units(text, s)
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration cannot be negative or infinite")
    return seconds


def _with_units(text: str, s: str) -> float:
    pos, total, last = 0, 0.0, math.inf
    for match in _PART.finditer(s):
        if match.start() != pos:
            break
        scale = _UNITS[match.group(2)]
        if scale >= last:
            raise argparse.ArgumentTypeError(
                f"{text!r}: units go from the largest down, each once (like 1h30m)"
            )
        total += float(match.group(1)) * scale
        pos, last = match.end(), scale
    if pos == 0 or pos != len(s):
        raise argparse.ArgumentTypeError(f"{text!r}: {_EXPECTED}")
    return total


def format_duration(seconds: float) -> str:
    """The shortest spelling parse_duration reads back: 5400 -> '1h30m', 0.5 -> '0.5s'."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    rest, parts = int(seconds), []
    for unit in ("d", "h", "m", "s"):
        n, rest = divmod(rest, int(_UNITS[unit]))
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)
