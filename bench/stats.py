"""What a load run measures: HDR latency histograms per operation, counts per status code,
the stress tool's counters, the run's phases and its measurement window, and a time series
at bounded cost (``bench.series``). Mergeable across driver workers.

Latencies are recorded in microseconds from the operation's *intended* start (open loop).

A run goes through five phases (:class:`Phase`): provisioning (users and contacts, before the
run's clock starts), the sign-in ramp, settling (the ramp's backlog drains), the measurement
window and the wind-down. The driver opens the window (``Recorder.open_window``) once the
steady state is reached; operations *intended* inside the window are also kept in
``window``: the verdict and the headline figures come from there only. Operations the
driver marks as part of a deliberate fail-over (``record(..., failover=True)``) are also kept
apart in ``failover`` and left out of the window's figures.

A ``RecordListener`` (the driver's Prometheus endpoint, say) is told of every record, late
start and skip as it happens.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from hdrh.histogram import HdrHistogram

from bench.series import HIGHEST_US, LOWEST_US, Second, Series, new_histogram

__all__ = ["HIGHEST_US", "LOWEST_US", "Second", "new_histogram"]  # moved to bench.series

PERCENTILES = (50.0, 90.0, 99.0, 99.9)

#: (operation, status) pairs that are answers, not errors: an offline or Do Not Disturb
#: invitee refuses, and a conversation can end before its invitee answers (a race every real
#: client meets)
REFUSALS = frozenset(
    {
        ("im-invite", "FAILED_PRECONDITION"),
        ("conference-create", "FAILED_PRECONDITION"),
        ("im-invite", "PERMISSION_DENIED"),
        ("conference-create", "PERMISSION_DENIED"),
        ("accept", "NOT_FOUND"),
    }
)


#: the code the driver counts the pool's "server too busy" answers under (UNAVAILABLE with a
#: retry-after: the pool throttling at its limit, as Lync does): counted apart, not an error
THROTTLED = "THROTTLED"


def is_error(name: str, code: str) -> bool:
    """Whether operation ``name`` answered with ``code`` counts as an error (the same rule for
    the progress line, the time series and the report)."""
    return code != "OK" and code != THROTTLED and (name, code) not in REFUSALS


class Phase(Enum):
    """The phases of a run, in order (each one starts when the one before ends)."""

    PROVISIONING = "provisioning"  # users and contact lists: not timed
    RAMP = "ramp"  # the sign-ins
    SETTLING = "settling"  # everyone signed in; the ramp's backlog drains
    WINDOW = "window"  # the steady state, measured: the verdict comes from here
    WIND_DOWN = "wind-down"  # in-flight calls finish, messages arrive, writes are read back


ERROR_SAMPLES = 3  # messages kept per (operation, status code)


def record_us(h: HdrHistogram, seconds: float) -> None:
    h.record_value(min(max(int(seconds * 1e6), LOWEST_US), HIGHEST_US))


def summary(h: HdrHistogram) -> dict[str, float]:
    """Count and latency percentiles in milliseconds."""
    count = h.get_total_count()
    out: dict[str, float] = {"count": float(count)}
    for p in PERCENTILES:
        out[f"p{p:g}"] = h.get_value_at_percentile(p) / 1000 if count else 0.0
    out["max"] = h.get_max_value() / 1000 if count else 0.0
    out["mean"] = h.get_mean_value() / 1000 if count else 0.0
    return out


def encode(h: HdrHistogram) -> str:
    return base64.b64encode(h.encode()).decode()


def decode(text: str) -> HdrHistogram:
    h = new_histogram()
    h.add(HdrHistogram.decode(base64.b64decode(text)))
    return h


@dataclass
class OpStats:
    histogram: HdrHistogram = field(default_factory=new_histogram)
    codes: Counter[str] = field(default_factory=Counter)
    late: int = 0  # started more than LATE_S after the intended time
    skipped: int = 0  # not started at all: every slot of the driver was taken
    not_started: int = 0  # not started: the user was not signed in, or had no partner

    def record(self, latency_s: float, code: str) -> None:
        self.codes[code] += 1
        if code == "OK":
            record_us(self.histogram, latency_s)

    def errors(self, name: str) -> int:
        return sum(n for c, n in self.codes.items() if is_error(name, c))

    @property
    def throttled(self) -> int:
        return self.codes.get(THROTTLED, 0)

    @property
    def calls(self) -> int:
        return sum(self.codes.values())

    def merge(self, other: OpStats) -> None:
        self.histogram.add(other.histogram)
        self.codes.update(other.codes)
        self.late += other.late
        self.skipped += other.skipped
        self.not_started += other.not_started

    def to_wire(self) -> dict[str, Any]:
        return {
            "h": encode(self.histogram),
            "codes": dict(self.codes),
            "late": self.late,
            "skipped": self.skipped,
            "not_started": self.not_started,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> OpStats:
        return cls(
            decode(data["h"]),
            Counter(data["codes"]),
            data["late"],
            data["skipped"],
            data.get("not_started", 0),
        )


class RecordListener(Protocol):
    """Told of each measurement as it is made (e.g. ``bench.driver_metrics``)."""

    def recorded(self, name: str, latency_s: float, code: str) -> None: ...

    def late(self, name: str) -> None: ...

    def skipped(self, name: str) -> None: ...


class Recorder:
    """Collects one driver's measurements.

    ``window_from`` / ``window_to``: the measurement window in run seconds (None: not opened,
    or not closed yet); ``phases``: when each phase began (run seconds; provisioning has
    none). The time series is ``series`` (bounded: ``bench.series``), by intended start."""

    def __init__(
        self, listener: RecordListener | None = None, series: Series | None = None
    ) -> None:
        self.ops: dict[str, OpStats] = {}
        #: the same, for operations intended inside the measurement window
        self.window: dict[str, OpStats] = {}
        self.window_from: float | None = None
        self.window_to: float | None = None
        #: the same, for operations caught in a deliberate fail-over (``poolsim run
        #: --kill-front-end-at``): counted here as well as in ``ops``, never in ``window``
        self.failover: dict[str, OpStats] = {}
        self.counters: Counter[str] = Counter()
        #: calls and latency over time, by intended start: bounded (``bench.series``)
        self.series = series if series is not None else Series()
        #: a few error messages per "operation code" (the first ERROR_SAMPLES of each)
        self.error_samples: dict[str, list[str]] = {}
        self.phases: dict[str, float] = {}
        self.errors = 0  # errors so far (``is_error``), for the progress line
        self.listener = listener

    # --- phases and the window ---

    def enter(self, phase: Phase, at: float) -> None:
        self.phases.setdefault(phase.value, at)
        if phase is Phase.WINDOW:
            self.window_from = at
        elif phase is Phase.WIND_DOWN and self.window_from is not None and self.window_to is None:
            self.window_to = at

    def in_window(self, at: float) -> bool:
        return (
            self.window_from is not None
            and at >= self.window_from
            and (self.window_to is None or at < self.window_to)
        )

    @property
    def window_length(self) -> float:
        if self.window_from is None or self.window_to is None:
            return 0.0
        return max(0.0, self.window_to - self.window_from)

    @property
    def seconds(self) -> Mapping[int, Second]:
        """The live seconds of ``series``: the last minute or so, not the whole run."""
        return self.series.live

    # --- measurements ---

    def op(self, name: str) -> OpStats:
        stats = self.ops.get(name)
        if stats is None:
            stats = self.ops[name] = OpStats()
        return stats

    def _window_op(self, name: str) -> OpStats:
        stats = self.window.get(name)
        if stats is None:
            stats = self.window[name] = OpStats()
        return stats

    def record(
        self, name: str, at: float, latency_s: float, code: str, *, failover: bool = False
    ) -> None:
        """An operation intended at ``at`` (run seconds) finished after ``latency_s``;
        ``failover``: it was caught in a deliberate fail-over (see ``failover``)."""
        self.op(name).record(latency_s, code)
        if failover:
            self.failover.setdefault(name, OpStats()).record(latency_s, code)
        elif self.in_window(at):
            self._window_op(name).record(latency_s, code)
        error = is_error(name, code)
        self.series.record(at, latency_s, code == "OK", error)
        if error:
            self.errors += 1
        if self.listener is not None:
            self.listener.recorded(name, latency_s, code)

    def late(self, name: str, at: float) -> None:
        """Operation ``name``, intended at ``at``, started late."""
        self.op(name).late += 1
        if self.in_window(at):
            self._window_op(name).late += 1
        self.series.late(at)
        if self.listener is not None:
            self.listener.late(name)

    def skipped(self, name: str, at: float) -> None:
        """Operation ``name``, intended at ``at``, was not started: no free slot."""
        self.op(name).skipped += 1
        if self.in_window(at):
            self._window_op(name).skipped += 1
        self.series.skipped(at)
        if self.listener is not None:
            self.listener.skipped(name)

    def not_started(self, name: str, at: float) -> None:
        """Operation ``name`` was not started: its user is not signed in or has no partner."""
        self.op(name).not_started += 1
        if self.in_window(at):
            self._window_op(name).not_started += 1

    def error_sample(self, name: str, code: str, message: str) -> None:
        """Keep ``message`` as an example of ``name`` failing with ``code`` (bounded)."""
        kept = self.error_samples.setdefault(f"{name} {code}", [])
        if len(kept) < ERROR_SAMPLES:
            kept.append(message[:300])

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    # --- several drivers ---

    def merge(self, other: Recorder) -> None:
        """Add ``other``'s figures (its window bounds are ``combine``'s business)."""
        for name, stats in other.ops.items():
            self.op(name).merge(stats)
        for name, stats in other.window.items():
            self._window_op(name).merge(stats)
        for name, stats in other.failover.items():
            self.failover.setdefault(name, OpStats()).merge(stats)
        self.counters.update(other.counters)
        self.series.merge(other.series)
        for key, messages in other.error_samples.items():
            kept = self.error_samples.setdefault(key, [])
            kept += messages[: ERROR_SAMPLES - len(kept)]
        self.errors += other.errors

    @classmethod
    def combine(cls, parts: list[Recorder]) -> Recorder:
        """Several drivers' figures as one. The combined window is where every driver's
        window was open (the latest opening, the earliest close; none if one never opened);
        a combined phase starts when the last driver entered it."""
        out = cls()
        for part in parts:
            out.merge(part)
            for phase, at in part.phases.items():
                out.phases[phase] = max(at, out.phases.get(phase, at))
        opened = [p.window_from for p in parts]
        closed = [p.window_to for p in parts]
        if parts and all(t is not None for t in opened):
            out.window_from = max(t for t in opened if t is not None)
        if parts and all(t is not None for t in closed):
            out.window_to = min(t for t in closed if t is not None)
        return out

    def to_wire(self, series: bool = True) -> dict[str, Any]:
        """Everything, as JSON; ``series=False``: all but the time series (the run folder's
        checkpoint: the series goes to its own file as it is sealed)."""
        return {
            "ops": {n: s.to_wire() for n, s in self.ops.items()},
            "window": {n: s.to_wire() for n, s in self.window.items()},
            "failover": {n: s.to_wire() for n, s in self.failover.items()},
            "window_from": self.window_from,
            "window_to": self.window_to,
            "phases": self.phases,
            "errors": self.errors,
            "counters": dict(self.counters),
            "error_samples": self.error_samples,
            "series": self.series.to_wire() if series else [],
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Recorder:
        r = cls()
        r.ops = {n: OpStats.from_wire(s) for n, s in data["ops"].items()}
        r.window = {n: OpStats.from_wire(s) for n, s in data.get("window", {}).items()}
        r.failover = {n: OpStats.from_wire(s) for n, s in data.get("failover", {}).items()}
        r.window_from = data.get("window_from")
        r.window_to = data.get("window_to")
        r.phases = dict(data.get("phases", {}))
        r.errors = int(data.get("errors", 0))
        r.counters = Counter(data["counters"])
        r.error_samples = {k: list(v) for k, v in data.get("error_samples", {}).items()}
        r.series = Series.from_rows(data.get("series", []))
        return r
