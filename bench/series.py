"""A run's time series at bounded cost: per second for the recent past, per 10 s and per
minute further back, each bucket an HDR latency histogram (merged exactly, never averaged).

Buckets are keyed by the operations' *intended* start (open loop), like every other figure.
``Series`` keeps three tiers, by age behind the newest intended start it has seen:

    age < live_s            one bucket per second, live histograms (still filling)
    live_s .. tens_s        one per 10 s: the 10 seconds merged, kept compressed
    tens_s and older        one per minute: the six 10-s buckets merged

so a run of any length holds about ``live_s`` live histograms (some 170 kB each), a few
hundred compressed 10-s buckets and one small compressed bucket per minute. An operation
that finishes after its second was already merged into a 10-s bucket (it took longer than
``live_s``) is counted in the oldest live second instead (``stragglers`` says how many).

Every bucket is handed to ``sink`` as it is sealed (the run folder appends it to
``series.jsonl``, ``bench.folder``), so a run that is stopped or killed leaves its series
behind, up to the last minute; ``Series.from_rows`` reads it back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes
DIGITS = 3
TEN = 10
MINUTE = 60
LIVE_S = 60
TENS_S = 3600


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def release(h: HdrHistogram) -> None:
    """Let ``h`` go as soon as its last reference does. An HdrHistogram and its encoder refer
    to each other, so without this only the cyclic collector frees its 170 kB of counts, and
    in a driver with a large heap it runs seldom: a series sealing a bucket every 10 s then
    holds dozens of dead histograms and its memory seems to grow (measured: +7%/h)."""
    h.encoder.histogram = None


def clamp_us(latency_s: float) -> int:
    """A latency as the histograms record it: whole microseconds within their range."""
    return min(max(int(latency_s * 1e6), LOWEST_US), HIGHEST_US)


@dataclass
class Second:
    """One second of the run, still filling."""

    completed: int = 0
    errors: int = 0
    histogram: HdrHistogram = field(default_factory=new_histogram)
    late: int = 0  # operations intended in this second that started late
    skipped: int = 0  # ... that found no free slot


@dataclass(frozen=True, slots=True)
class Sealed:
    """A bucket of ``span`` seconds from ``t``: its counts, the latency figures of its OK
    calls (milliseconds) and its histogram, compressed (HdrHistogram's base64 encoding)."""

    t: int
    span: int
    completed: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    encoded: str
    late: int = 0
    skipped: int = 0

    @classmethod
    def of(
        cls,
        t: int,
        span: int,
        completed: int,
        errors: int,
        h: HdrHistogram,
        late: int = 0,
        skipped: int = 0,
    ) -> Sealed:
        n = h.get_total_count()
        return cls(
            t,
            span,
            completed,
            errors,
            h.get_value_at_percentile(50) / 1000 if n else 0.0,
            h.get_value_at_percentile(99) / 1000 if n else 0.0,
            h.get_max_value() / 1000 if n else 0.0,
            h.encode().decode(),
            late,
            skipped,
        )

    def histogram(self) -> HdrHistogram:
        """The bucket's histogram, decoded (``release`` it when done)."""
        h = new_histogram()
        decoded = HdrHistogram.decode(self.encoded.encode())
        h.add(decoded)
        release(decoded)
        return h

    def to_row(self) -> dict[str, Any]:
        """The bucket as one line of ``series.jsonl``."""
        return {
            "t": self.t,
            "span": self.span,
            "calls": self.completed,
            "failed": self.errors,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "late": self.late,
            "skipped": self.skipped,
            "h": self.encoded,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Sealed:
        return cls(
            int(row["t"]),
            int(row["span"]),
            int(row["calls"]),
            int(row["failed"]),
            float(row["p50_ms"]),
            float(row["p99_ms"]),
            float(row["max_ms"]),
            str(row["h"]),
            int(row.get("late", 0)),
            int(row.get("skipped", 0)),
        )


def fold(t: int, span: int, parts: Iterable[Sealed | Second]) -> Sealed:
    """Buckets merged into one of ``span`` seconds from ``t``: counts add up, histograms merge
    exactly (the percentiles of the result are those of all the calls)."""
    h = new_histogram()
    completed = errors = late = skipped = 0
    for p in parts:
        completed += p.completed
        errors += p.errors
        late += p.late
        skipped += p.skipped
        if isinstance(p, Second):
            h.add(p.histogram)
        else:
            part = p.histogram()
            h.add(part)
            release(part)
    out = Sealed.of(t, span, completed, errors, h, late, skipped)
    release(h)
    return out


def seal(sec: Second, t: int) -> Sealed:
    return Sealed.of(t, 1, sec.completed, sec.errors, sec.histogram, sec.late, sec.skipped)


class Series:
    """The tiers of the module docstring; ``sink`` gets every bucket as it is sealed."""

    def __init__(
        self,
        live_s: int = LIVE_S,
        tens_s: int = TENS_S,
        sink: Callable[[Sealed], None] | None = None,
    ) -> None:
        if live_s < 1 or tens_s < live_s + MINUTE + TEN:
            raise ValueError(
                f"live_s={live_s}, tens_s={tens_s}: expected live_s >= 1 and tens_s >= live_s + 70"
            )
        self.live_s = live_s
        self.tens_s = tens_s
        self.sink = sink
        self.live: dict[int, Second] = {}
        self.tens: dict[int, Sealed] = {}
        self.minutes: dict[int, Sealed] = {}
        self.completed = 0
        self.errors = 0
        self.stragglers = 0
        self.newest = 0.0
        self._tens_from = 0  # every second before it is in a 10-s bucket (or a minute)
        self._minutes_from = 0  # every 10-s bucket before it is in a minute

    # --- recording ---

    def _live(self, at: float) -> Second:
        if at > self.newest:
            self.advance(at)
        t = int(at)
        if t < self._tens_from:
            self.stragglers += 1
            t = self._tens_from
        sec = self.live.get(t)
        if sec is None:
            sec = self.live[t] = Second()
        return sec

    def record(self, at: float, latency_s: float, ok: bool, error: bool | None = None) -> None:
        """A call intended at ``at`` (run seconds) ended after ``latency_s``, OK or not;
        ``error``: whether it counts as an error (default: when not OK; a refusal is an
        answer, ``bench.stats.is_error``)."""
        sec = self._live(at)
        sec.completed += 1
        self.completed += 1
        if ok:
            sec.histogram.record_value(clamp_us(latency_s))
        if (not ok) if error is None else error:
            sec.errors += 1
            self.errors += 1

    def late(self, at: float) -> None:
        """An operation intended at ``at`` started late."""
        self._live(at).late += 1

    def skipped(self, at: float) -> None:
        """An operation intended at ``at`` found no free slot."""
        self._live(at).skipped += 1

    def advance(self, now: float) -> None:
        """Move the tiers on to run time ``now``: seal what has aged out of its tier."""
        self.newest = max(self.newest, now)
        while self._tens_from + TEN <= self.newest - self.live_s:
            b = self._tens_from
            parts = [self.live.pop(t) for t in range(b, b + TEN) if t in self.live]
            if parts:
                self._put(fold(b, TEN, parts))
            for sec in parts:
                release(sec.histogram)
            self._tens_from += TEN
        while (
            self._minutes_from + MINUTE <= self.newest - self.tens_s
            and self._minutes_from + MINUTE <= self._tens_from
        ):
            m = self._minutes_from
            tens = [self.tens.pop(t) for t in range(m, m + MINUTE, TEN) if t in self.tens]
            if tens:
                self._put(fold(m, MINUTE, tens))
            self._minutes_from += MINUTE

    def _put(self, bucket: Sealed) -> None:
        (self.tens if bucket.span == TEN else self.minutes)[bucket.t] = bucket
        if self.sink is not None:
            self.sink(bucket)

    def flush(self) -> None:
        """Hand the live seconds to ``sink`` as they are now (at the end of a run)."""
        if self.sink is not None:
            for t in sorted(self.live):
                self.sink(seal(self.live[t], t))

    # --- reading ---

    def second(self, t: int) -> Second | None:
        """Second ``t`` while it is live (the recent past), else None."""
        return self.live.get(t)

    def buckets(self) -> list[Sealed]:
        """Every bucket in time order: minutes, then 10-s buckets, then live seconds."""
        out = [*self.minutes.values(), *self.tens.values()]
        out += [seal(sec, t) for t, sec in self.live.items()]
        out.sort(key=lambda b: b.t)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """The report's time series: per bucket, calls and errors per second over its span,
        and the latency figures of its OK calls."""
        return [
            {
                "t": b.t,
                "span": b.span,
                "ops": b.completed / b.span,
                "errors": b.errors / b.span,
                "calls": b.completed,
                "failed": b.errors,
                "late": b.late / b.span,
                "skipped": b.skipped / b.span,
                "p50_ms": b.p50_ms,
                "p99_ms": b.p99_ms,
                "max_ms": b.max_ms,
            }
            for b in self.buckets()
        ]

    # --- merging (driver workers) and reading back ---

    def add(self, bucket: Sealed) -> None:
        """Merge one bucket in: where this series holds the same time at a coarser span it
        goes into that bucket; where it holds it finer, those buckets are folded into one of
        ``bucket``'s span first."""
        self.completed += bucket.completed
        self.errors += bucket.errors
        self.newest = max(self.newest, bucket.t + bucket.span - 1)
        self._place(bucket)

    def _place(self, b: Sealed) -> None:
        m, ten = b.t - b.t % MINUTE, b.t - b.t % TEN
        if m in self.minutes:
            self.minutes[m] = fold(m, MINUTE, [self.minutes[m], b])
            return
        if b.span <= TEN and ten in self.tens:
            self.tens[ten] = fold(ten, TEN, [self.tens[ten], b])
            return
        if b.span == 1:
            sec = self.live.setdefault(b.t, Second())
            sec.completed += b.completed
            sec.errors += b.errors
            sec.late += b.late
            sec.skipped += b.skipped
            part = b.histogram()
            sec.histogram.add(part)
            release(part)
            return
        end = b.t + b.span
        parts: list[Sealed | Second] = [b]
        parts += [self.live.pop(t) for t in range(b.t, end) if t in self.live]
        if b.span == MINUTE:
            parts += [self.tens.pop(t) for t in range(b.t, end, TEN) if t in self.tens]
            self.minutes[b.t] = fold(b.t, MINUTE, parts)
            self._minutes_from = max(self._minutes_from, end)
        else:
            self.tens[b.t] = fold(b.t, TEN, parts)
        self._tens_from = max(self._tens_from, end)

    def merge(self, other: Series) -> None:
        for b in other.buckets():
            self.add(b)
        self.stragglers += other.stragglers

    def to_wire(self) -> list[dict[str, Any]]:
        return [b.to_row() for b in self.buckets()]

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> Series:
        """A series from its buckets: ``to_wire``, or the lines of ``series.jsonl`` in the
        order they were written, where a minute's line comes after its 10-s buckets' and
        stands for them."""
        minutes: dict[int, Sealed] = {}
        rest: dict[tuple[int, int], Sealed] = {}
        for row in rows:
            b = Sealed.from_row(row)
            if b.span == MINUTE:
                minutes[b.t] = b
                for t in range(b.t, b.t + MINUTE, TEN):
                    rest.pop((t, TEN), None)
            else:
                rest[b.t, b.span] = b
        s = cls()
        for b in [*minutes.values(), *rest.values()]:
            s.add(b)
        return s
