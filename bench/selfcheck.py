"""The driver checks itself: its processor, its event loop's lag, and when its window opens.

A load generator that is short of processor starts operations late and measures its own
queueing as the pool's latency. ``Health`` samples, once a second, the driver process's
processor use (CPU seconds per wall second, in percent of one core: one asyncio driver runs
on one core) and keeps a histogram of how late a 10 ms timer fires (the loop lag). The run's
verdict is INCONCLUSIVE ("the load generator was saturated") when, inside the measurement
window, a driver used more than ``SATURATED_CPU`` percent of a core, its loop lag p99 was
over ``SATURATED_LAG_MS``, or more than 1% of its operations started late or found no free
slot. (Locust warns at 90% of its own processor; k6 reports dropped iterations.)

``WindowGate`` decides when the measurement window opens (pure, so tests drive it with
made-up figures): everyone who should be signed in is (every sign-in answered), the ramp's
backlog has drained (for ``SETTLE_TICKS`` seconds running no late start, no operation left
without a slot, and calls in flight no more than the offered rate would keep in flight at
``LATE_S``), and the conference population is at its steady level (Little's law, less two
standard deviations of a Poisson count).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.samples import Samples, weighted_mean
from bench.stats import decode, encode, new_histogram, record_us

TICK_S = 0.01  # the loop-lag timer
SATURATED_CPU = 85.0  # percent of one core
SATURATED_LAG_MS = 20.0  # loop lag p99
SETTLE_TICKS = 2  # seconds running that the backlog must stay drained
LATE_S = 0.05  # an operation that starts later than this counts as late
MIN_IN_FLIGHT = 16  # calls in flight that always count as drained


@dataclass(frozen=True, slots=True)
class Readiness:
    """What a driver saw in the last second."""

    sign_ins_pending: int  # users whose sign-in has not been answered yet
    calls_in_flight: int
    started: int  # operations started (or skipped) in the last second
    late: int  # of which late
    skipped: int  # of which left without a slot
    conferences: int  # conferences in progress


@dataclass
class WindowGate:
    """Opens the measurement window once the steady state is reached (see the module).

    ``offered_per_s``: the operations per second the schedule offers in the steady state;
    ``conferences``: the steady conference population (Little's law)."""

    offered_per_s: float
    conferences: float
    calm: int = 0  # consecutive seconds the backlog stayed drained
    why: list[str] = field(default_factory=list)  # what kept the window shut last time

    def in_flight_limit(self) -> float:
        return max(MIN_IN_FLIGHT, self.offered_per_s * LATE_S * 2)

    def conference_floor(self) -> float:
        c = self.conferences
        return max(0.0, c - 2 * math.sqrt(c) - 1)

    def ready(self, r: Readiness) -> bool:
        """One second's figures; True once the window may open."""
        why: list[str] = []
        if r.sign_ins_pending:
            why.append(f"{r.sign_ins_pending} sign-ins still pending")
        drained = (
            r.late <= 0.01 * max(r.started, 1)
            and r.skipped == 0
            and r.calls_in_flight <= self.in_flight_limit()
        )
        self.calm = self.calm + 1 if drained and not r.sign_ins_pending else 0
        if not drained:
            why.append(
                f"backlog: {r.calls_in_flight} calls in flight (at most "
                f"{self.in_flight_limit():.0f}), {r.late} late and {r.skipped} skipped of "
                f"{r.started} started in the last second"
            )
        elif self.calm < SETTLE_TICKS and not r.sign_ins_pending:
            why.append(f"backlog drained for {self.calm} s of {SETTLE_TICKS}")
        if r.conferences < self.conference_floor():
            why.append(
                f"conferences in progress {r.conferences}, steady level "
                f"{self.conferences:.0f} (at least {self.conference_floor():.0f})"
            )
        self.why = why
        return not why


def quantile_us(values: list[int], q: float) -> int:
    """The ``q`` quantile of ``values`` (the smallest value with at least ``q`` of them at or
    below it, as an HdrHistogram reads a percentile); 0 for none."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Health:
    """One driver's processor use and loop lag, sampled while it runs.

    ``samples``: per second (run second, processor % of one core, loop lag p99 ms in that
    second, calls in flight), kept at bounded cost (``bench.samples``: older seconds merged
    into weighted means). ``window_cpu`` (sum, seconds, max) and ``window_lag`` keep the same
    inside the measurement window (``in_window`` says when)."""

    def __init__(self, on_lag: Callable[[float], None] | None = None) -> None:
        self.on_lag = on_lag  # told of every lag measured (seconds)
        self.lag = new_histogram()  # the whole run
        self.window_lag = new_histogram()
        self.window_cpu: tuple[float, int, float] = (0.0, 0, 0.0)  # sum, seconds, max
        self.samples = Samples(keep_fresh=False)
        self.blocked: list[str] = []  # what kept the window shut, if it never opened
        #: this second's lags (microseconds): a list, not a histogram, because resetting an
        #: HdrHistogram walks its every bucket (about 2 ms, which the next tick measured)
        self._second: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def start(
        self,
        now: Callable[[], float],
        in_window: Callable[[float], bool],
        in_flight: Callable[[], int],
    ) -> None:
        """Sample until ``stop``: ``now()`` run seconds, ``in_window(t)``, ``in_flight()``."""
        self._task = asyncio.get_running_loop().create_task(self._loop(now, in_window, in_flight))

    async def _loop(
        self,
        now: Callable[[], float],
        in_window: Callable[[float], bool],
        in_flight: Callable[[], int],
    ) -> None:
        last_wall, last_cpu = time.perf_counter(), time.process_time()
        next_sample = last_wall + 1.0
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK_S)
            after = time.perf_counter()
            lag = max(0.0, after - before - TICK_S)
            record_us(self.lag, lag)
            self._second.append(int(lag * 1e6))
            if self.on_lag is not None:
                self.on_lag(lag)
            t = now()
            if in_window(t):
                record_us(self.window_lag, lag)
            if after >= next_sample:
                cpu = time.process_time()
                pct = 100.0 * (cpu - last_cpu) / max(after - last_wall, 1e-9)
                last_wall, last_cpu = after, cpu
                next_sample = after + 1.0
                p99 = quantile_us(self._second, 0.99) / 1000
                self._second.clear()
                self.samples.append((t, pct, p99, float(in_flight())))
                if in_window(t):
                    total, n, most = self.window_cpu
                    self.window_cpu = (total + pct, n + 1, max(most, pct))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def to_wire(self) -> dict[str, Any]:
        return {
            "lag": encode(self.lag),
            "window_lag": encode(self.window_lag),
            "window_cpu": list(self.window_cpu),
            "samples": [list(s) for s in self.samples],
            "blocked": self.blocked,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Health:
        h = cls()
        h.lag = decode(data["lag"])
        h.window_lag = decode(data["window_lag"])
        total, n, most = data["window_cpu"]
        h.window_cpu = (float(total), int(n), float(most))
        h.samples = Samples.of(tuple(s) for s in data["samples"])
        h.blocked = list(data.get("blocked", []))
        return h

    def summary(self) -> dict[str, Any]:
        """What the report shows of this driver."""
        total, n, most = self.window_cpu
        kept = list(self.samples)
        lag: HdrHistogram = self.window_lag if self.window_lag.get_total_count() else self.lag
        return {
            "cpu_mean": total / n if n else weighted_mean(kept, 1, 4),
            "cpu_max": most if n else max((k[1] for k in kept), default=0.0),
            "loop_lag_p50_ms": lag.get_value_at_percentile(50) / 1000,
            "loop_lag_p99_ms": lag.get_value_at_percentile(99) / 1000,
            "loop_lag_max_ms": lag.get_max_value() / 1000,
            "window_blocked_by": self.blocked,
            "samples": [list(s) for s in self.samples],
        }
