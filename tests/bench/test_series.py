"""The bounded time series: what ages out of the recent past is merged exactly (counts add
up, HDR histograms merge), per 10 s and then per minute, and reads back from its sink."""

from __future__ import annotations

import gc
import itertools
import random
import weakref
from typing import Any

import pytest

from bench.series import MINUTE, TEN, Sealed, Series, clamp_us, new_histogram

LIVE, TENS = 20, 100  # small tiers, so a few minutes of records cross all three


def calls(seed: int, seconds: int, per_s: int = 30) -> list[tuple[float, float, bool]]:
    """(intended start, latency, ok) in time order; one in ten fails."""
    rng = random.Random(seed)
    out = []
    for t in range(seconds):
        for _ in range(per_s):
            out.append((t + rng.random(), rng.lognormvariate(-5, 1), rng.random() > 0.1))
    out.sort()
    return out


def fill(series: Series, records: list[tuple[float, float, bool]]) -> Series:
    for at, latency, ok in records:
        series.record(at, latency, ok)
    return series


def expected(records: list[tuple[float, float, bool]], t: int, span: int) -> dict[str, Any]:
    """A bucket computed directly from the records that fall in it."""
    h = new_histogram()
    n = e = 0
    for at, latency, ok in records:
        if t <= at < t + span:
            n += 1
            if ok:
                h.record_value(clamp_us(latency))
            else:
                e += 1
    return {
        "calls": n,
        "failed": e,
        "p50": h.get_value_at_percentile(50) / 1000,
        "p99": h.get_value_at_percentile(99) / 1000,
        "max": h.get_max_value() / 1000,
        "count": h.get_total_count(),
    }


def test_tiers_by_age_and_exact_merges() -> None:
    records = calls(1, 400)
    s = fill(Series(live_s=LIVE, tens_s=TENS), records)
    newest = records[-1][0]
    buckets = s.buckets()
    # tiers by age behind the newest record
    for b in buckets:
        age = newest - (b.t + b.span)
        if b.span == MINUTE:
            assert age >= TENS - MINUTE
        elif b.span == TEN:
            assert age >= LIVE - TEN
            assert b.t + MINUTE > newest - TENS - MINUTE
        else:
            assert b.span == 1
            assert b.t >= newest - LIVE - TEN
    assert {b.span for b in buckets} == {1, TEN, MINUTE}
    # contiguous, no overlap, nothing lost
    for a, b in itertools.pairwise(buckets):
        assert a.t + a.span == b.t
    assert sum(b.completed for b in buckets) == len(records) == s.completed
    assert sum(b.errors for b in buckets) == s.errors
    # every bucket is what the records in it give: the merges are exact
    for b in buckets:
        want = expected(records, b.t, b.span)
        assert (b.completed, b.errors) == (want["calls"], want["failed"])
        assert b.histogram().get_total_count() == want["count"]
        assert (b.p50_ms, b.p99_ms, b.max_ms) == (want["p50"], want["p99"], want["max"])
    assert s.stragglers == 0
    # live histograms: only the recent past
    assert len(s.live) <= LIVE + TEN


def test_rows_are_rates_per_second_over_each_span() -> None:
    s = fill(Series(live_s=LIVE, tens_s=TENS), calls(2, 300, per_s=10))
    for row in s.rows():
        assert row["ops"] == pytest.approx(row["calls"] / row["span"])
        assert row["errors"] == pytest.approx(row["failed"] / row["span"])
    assert sum(r["calls"] for r in s.rows()) == 3000


def test_a_call_older_than_the_live_seconds_goes_to_the_oldest_live_one() -> None:
    s = Series(live_s=LIVE, tens_s=TENS)
    s.record(0.5, 0.01, True)
    s.record(100.0, 0.01, True)  # seals seconds 0..79 (older than LIVE) into 10-s buckets
    s.record(1.0, 0.02, True)  # took longer than LIVE: a straggler
    assert s.stragglers == 1
    assert s.tens[0].completed == 1
    assert min(s.live) == 80
    assert s.live[80].completed == 1
    assert s.completed == 3


def test_sink_lines_rebuild_the_series() -> None:
    """What the sink got as it went (10-s buckets, then the minutes that stand for them)
    plus the live seconds flushed at the end reads back as the same buckets."""
    lines: list[dict[str, Any]] = []
    s = Series(live_s=LIVE, tens_s=TENS, sink=lambda b: lines.append(b.to_row()))
    fill(s, calls(3, 400))
    spans = {row["span"] for row in lines}
    assert spans == {TEN, MINUTE}  # 10-s buckets superseded by minutes are still in the file
    partial = Series.from_rows(lines)  # a run killed now: everything but the live seconds
    assert partial.buckets() == [b for b in s.buckets() if b.span > 1]
    s.flush()
    assert Series.from_rows(lines).buckets() == s.buckets()
    assert Series.from_rows(s.to_wire()).buckets() == s.buckets()


def test_merging_two_drivers_series_is_the_series_of_all_calls() -> None:
    a_calls, b_calls = calls(4, 300), calls(5, 280)
    a = fill(Series(live_s=LIVE, tens_s=TENS), a_calls)
    b = fill(Series(live_s=LIVE, tens_s=TENS), b_calls)
    a.merge(b)
    both = sorted(a_calls + b_calls)
    assert a.completed == len(both)
    for bucket in a.buckets():
        want = expected(both, bucket.t, bucket.span)
        assert (bucket.completed, bucket.errors) == (want["calls"], want["failed"])
        assert bucket.p99_ms == want["p99"]
    ts = [(x.t, x.span) for x in a.buckets()]
    assert all(t1 + s1 == t2 for (t1, s1), (t2, _) in itertools.pairwise(ts))


def test_sealed_round_trip_and_bad_tiers() -> None:
    h = new_histogram()
    h.record_value(1500)
    b = Sealed.of(10, TEN, 3, 2, h)
    assert Sealed.from_row(b.to_row()) == b
    assert b.p99_ms == pytest.approx(1.5, rel=1e-3)
    with pytest.raises(ValueError, match="tens_s"):
        Series(live_s=60, tens_s=100)


def test_sealed_seconds_are_freed_without_the_cyclic_collector() -> None:
    """A second's histogram is gone as soon as its 10-s bucket is sealed, even while the
    cyclic garbage collector does not run (it runs seldom in a driver's large heap)."""
    s = Series(live_s=LIVE, tens_s=TENS)
    s.record(0.5, 0.01, True)
    first = weakref.ref(s.live[0].histogram)
    gc.disable()
    try:
        fill(s, calls(6, 300))
        assert first() is None
    finally:
        gc.enable()
