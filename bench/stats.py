"""What a load run measures: HDR latency histograms per operation, counts per status code,
the stress tool's counters, and a per-second time series. Mergeable across driver workers.

Latencies are recorded in microseconds from the operation's *intended* start (open loop).
Operations the driver marks as part of a deliberate fail-over (``record(..., failover=True)``)
are also kept apart in ``failover`` and left out of the steady-state figures.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes
DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def summary(h: HdrHistogram) -> dict[str, float]:
    """Count and latency percentiles in milliseconds."""
    count = h.get_total_count()
    out: dict[str, float] = {"count": float(count)}
    for p in PERCENTILES:
        out[f"p{p:g}"] = h.get_value_at_percentile(p) / 1000 if count else 0.0
    out["max"] = h.get_max_value() / 1000 if count else 0.0
    out["mean"] = h.get_mean_value() / 1000 if count else 0.0
    return out


@dataclass
class OpStats:
    histogram: HdrHistogram = field(default_factory=new_histogram)
    codes: Counter[str] = field(default_factory=Counter)
    late: int = 0  # started more than LATE_S after the intended time
    skipped: int = 0  # not started at all: too many operations already in flight

    def record(self, latency_s: float, code: str) -> None:
        self.codes[code] += 1
        if code == "OK":
            self.histogram.record_value(min(max(int(latency_s * 1e6), LOWEST_US), HIGHEST_US))

    @property
    def errors(self) -> int:
        return sum(n for c, n in self.codes.items() if c != "OK")

    def merge(self, other: OpStats) -> None:
        self.histogram.add(other.histogram)
        self.codes.update(other.codes)
        self.late += other.late
        self.skipped += other.skipped

    def to_wire(self) -> dict[str, Any]:
        return {
            "h": base64.b64encode(self.histogram.encode()).decode(),
            "codes": dict(self.codes),
            "late": self.late,
            "skipped": self.skipped,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> OpStats:
        h = new_histogram()
        h.add(HdrHistogram.decode(base64.b64decode(data["h"])))
        return cls(h, Counter(data["codes"]), data["late"], data["skipped"])


@dataclass
class Second:
    """One second of the run."""

    completed: int = 0
    errors: int = 0
    histogram: HdrHistogram = field(default_factory=new_histogram)


class Recorder:
    """Collects one driver's measurements."""

    def __init__(self, steady_from: float = 0.0) -> None:
        self.ops: dict[str, OpStats] = {}
        #: the same, for operations intended after the sign-in ramp (steady state)
        self.steady: dict[str, OpStats] = {}
        self.steady_from = steady_from
        #: the same, for operations caught in a deliberate fail-over (``poolsim run
        #: --kill-front-end-at``): counted here as well as in ``ops``, never in ``steady``
        self.failover: dict[str, OpStats] = {}
        self.counters: Counter[str] = Counter()
        self.seconds: dict[int, Second] = {}

    def op(self, name: str) -> OpStats:
        stats = self.ops.get(name)
        if stats is None:
            stats = self.ops[name] = OpStats()
        return stats

    def record(
        self, name: str, at: float, latency_s: float, code: str, *, failover: bool = False
    ) -> None:
        """An operation intended at ``at`` (run seconds) finished after ``latency_s``;
        ``failover``: it was caught in a deliberate fail-over (see ``failover``)."""
        self.op(name).record(latency_s, code)
        if failover:
            self.failover.setdefault(name, OpStats()).record(latency_s, code)
        elif at >= self.steady_from:
            steady = self.steady.get(name)
            if steady is None:
                steady = self.steady[name] = OpStats()
            steady.record(latency_s, code)
        sec = self.seconds.get(int(at))
        if sec is None:
            sec = self.seconds[int(at)] = Second()
        sec.completed += 1
        if code == "OK":
            sec.histogram.record_value(min(max(int(latency_s * 1e6), LOWEST_US), HIGHEST_US))
        else:
            sec.errors += 1

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def merge(self, other: Recorder) -> None:
        for name, stats in other.ops.items():
            self.op(name).merge(stats)
        for name, stats in other.steady.items():
            self.steady.setdefault(name, OpStats()).merge(stats)
        for name, stats in other.failover.items():
            self.failover.setdefault(name, OpStats()).merge(stats)
        self.counters.update(other.counters)
        for t, sec in other.seconds.items():
            mine = self.seconds.setdefault(t, Second())
            mine.completed += sec.completed
            mine.errors += sec.errors
            mine.histogram.add(sec.histogram)

    def to_wire(self) -> dict[str, Any]:
        return {
            "ops": {n: s.to_wire() for n, s in self.ops.items()},
            "steady": {n: s.to_wire() for n, s in self.steady.items()},
            "failover": {n: s.to_wire() for n, s in self.failover.items()},
            "steady_from": self.steady_from,
            "counters": dict(self.counters),
            "seconds": {
                str(t): [s.completed, s.errors, base64.b64encode(s.histogram.encode()).decode()]
                for t, s in self.seconds.items()
            },
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Recorder:
        r = cls(data.get("steady_from", 0.0))
        r.ops = {n: OpStats.from_wire(s) for n, s in data["ops"].items()}
        r.steady = {n: OpStats.from_wire(s) for n, s in data.get("steady", {}).items()}
        r.failover = {n: OpStats.from_wire(s) for n, s in data.get("failover", {}).items()}
        r.counters = Counter(data["counters"])
        for t, (done, errs, h) in data["seconds"].items():
            hist = new_histogram()
            hist.add(HdrHistogram.decode(base64.b64decode(h)))
            r.seconds[int(t)] = Second(done, errs, hist)
        return r
