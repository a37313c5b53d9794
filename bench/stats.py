"""What a load run measures: HDR latency histograms per operation, counts per status code,
the stress tool's counters, and a time series at bounded cost (``bench.series``). Mergeable
across driver workers.

Latencies are recorded in microseconds from the operation's *intended* start (open loop).
Operations the driver marks as part of a deliberate fail-over (``record(..., failover=True)``)
are also kept apart in ``failover`` and left out of the steady-state figures.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from bench.series import HIGHEST_US, LOWEST_US, Second, Series, clamp_us, new_histogram

__all__ = ["HIGHEST_US", "LOWEST_US", "Second", "new_histogram"]  # moved to bench.series

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
ERROR_SAMPLES = 3  # messages kept per (operation, status code)


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
            self.histogram.record_value(clamp_us(latency_s))

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


class Recorder:
    """Collects one driver's measurements."""

    def __init__(self, steady_from: float = 0.0, series: Series | None = None) -> None:
        self.ops: dict[str, OpStats] = {}
        #: the same, for operations intended after the sign-in ramp (steady state)
        self.steady: dict[str, OpStats] = {}
        self.steady_from = steady_from
        #: the same, for operations caught in a deliberate fail-over (``poolsim run
        #: --kill-front-end-at``): counted here as well as in ``ops``, never in ``steady``
        self.failover: dict[str, OpStats] = {}
        self.counters: Counter[str] = Counter()
        #: calls and latency over time, by intended start: bounded (``bench.series``)
        self.series = series if series is not None else Series()
        #: a few error messages per "operation code" (the first ERROR_SAMPLES of each)
        self.error_samples: dict[str, list[str]] = {}

    @property
    def seconds(self) -> Mapping[int, Second]:
        """The live seconds of ``series``: the last minute or so, not the whole run."""
        return self.series.live

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
        self.series.record(at, latency_s, code == "OK")

    def error_sample(self, name: str, code: str, message: str) -> None:
        """Keep ``message`` as an example of ``name`` failing with ``code`` (bounded)."""
        kept = self.error_samples.setdefault(f"{name} {code}", [])
        if len(kept) < ERROR_SAMPLES:
            kept.append(message[:300])

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
        self.series.merge(other.series)
        for key, messages in other.error_samples.items():
            kept = self.error_samples.setdefault(key, [])
            kept += messages[: ERROR_SAMPLES - len(kept)]

    def to_wire(self, series: bool = True) -> dict[str, Any]:
        """Everything, as JSON; ``series=False``: all but the time series (the run folder's
        checkpoint: the series goes to its own file as it is sealed)."""
        return {
            "ops": {n: s.to_wire() for n, s in self.ops.items()},
            "steady": {n: s.to_wire() for n, s in self.steady.items()},
            "failover": {n: s.to_wire() for n, s in self.failover.items()},
            "steady_from": self.steady_from,
            "counters": dict(self.counters),
            "error_samples": self.error_samples,
            "series": self.series.to_wire() if series else [],
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Recorder:
        r = cls(data.get("steady_from", 0.0))
        r.ops = {n: OpStats.from_wire(s) for n, s in data["ops"].items()}
        r.steady = {n: OpStats.from_wire(s) for n, s in data.get("steady", {}).items()}
        r.failover = {n: OpStats.from_wire(s) for n, s in data.get("failover", {}).items()}
        r.counters = Counter(data["counters"])
        r.error_samples = {k: list(v) for k, v in data.get("error_samples", {}).items()}
        r.series = Series.from_rows(data.get("series", []))
        return r
