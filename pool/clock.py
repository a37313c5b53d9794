"""Time, injected. Nothing in the domain reads the wall clock directly.

``now()`` is wall-clock seconds since the epoch (for records a person reads);
``monotonic()`` is for durations and deadlines. ``FakeClock`` moves only when told to, so idle
timers, registration expiry and the IMMCU's 40-second buffer are tested in microseconds.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    # The functions themselves, not methods wrapping them: the routing path reads the clock
    # several times per message.
    now = staticmethod(time.time)  # noqa: TID251 - the one place that reads the wall clock
    monotonic = staticmethod(time.monotonic)


class FakeClock:
    """A clock for tests: starts at ``start`` and moves only with ``advance``."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._mono = 1000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        self._now += seconds
        self._mono += seconds
