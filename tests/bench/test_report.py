"""Histogram and report maths: the window, the verdict's three outcomes, the files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report, report_files
from bench.probe import FrontEndSeries
from bench.stats import Phase, Recorder, summary


def healthy(
    cpu: float = 20.0, lag: float = 1.0, longest: float | None = None
) -> dict[str, dict[str, Any]]:
    """One driver's ``Health.summary()`` with the given processor, loop lag p99 and longest
    stall (the p99 unless given)."""
    return {
        "driver": {
            "cpu_mean": cpu,
            "cpu_max": cpu,
            "loop_lag_p50_ms": lag / 2,
            "loop_lag_p99_ms": lag,
            "loop_lag_max_ms": lag if longest is None else longest,
            "window_blocked_by": [],
            "samples": [[1.0, cpu, lag, 0]],
        }
    }


def windowed(start: float = 0.0, end: float = 30.0) -> Recorder:
    rec = Recorder()
    rec.enter(Phase.RAMP, 0.0)
    rec.enter(Phase.SETTLING, start)
    rec.enter(Phase.WINDOW, start)
    rec.window_to = end
    return rec


def test_percentiles_and_merge() -> None:
    a, b = Recorder(), Recorder()
    for i in range(1, 101):  # 1 .. 100 ms
        a.record("poll", 0.5, i / 1000, "OK")
    b.record("poll", 1.5, 1.0, "OK")
    b.record("poll", 1.5, 0.0, "NOT_FOUND")
    a.merge(Recorder.from_wire(json.loads(json.dumps(b.to_wire()))))
    s = summary(a.ops["poll"].histogram)
    assert s["count"] == 101
    assert s["p50"] == pytest.approx(51, rel=0.01)
    assert s["p99"] == pytest.approx(100, rel=0.01)
    assert s["max"] == pytest.approx(1000, rel=0.01)
    assert a.ops["poll"].codes == {"OK": 101, "NOT_FOUND": 1}
    assert (a.seconds[0].completed, a.seconds[1].completed, a.seconds[1].errors) == (100, 2, 1)
    assert a.errors == 1


def test_only_operations_intended_inside_the_window_count_in_it() -> None:
    rec = Recorder()
    rec.enter(Phase.RAMP, 0.0)
    rec.record("poll", 1.0, 2.0, "OK")  # the ramp's backlog: slow, before the window
    rec.late("poll", 1.0)
    rec.enter(Phase.WINDOW, 5.0)
    rec.record("poll", 6.0, 0.002, "OK")
    rec.record("poll", 7.0, 0.001, "UNAVAILABLE")
    rec.enter(Phase.WIND_DOWN, 10.0)
    rec.record("poll", 11.0, 0.002, "OK")  # the wind-down
    assert (rec.window_from, rec.window_to, rec.window_length) == (5.0, 10.0, 5.0)
    w = rec.window["poll"]
    assert (w.calls, w.errors("poll"), w.late) == (2, 1, 0)
    assert rec.ops["poll"].calls == 4
    assert rec.phases == {"ramp": 0.0, "window": 5.0, "wind-down": 10.0}


def test_combined_window_is_where_every_driver_measured() -> None:
    a, b, never = Recorder(), Recorder(), Recorder()
    for r, start in ((a, 3.0), (b, 5.0)):
        r.enter(Phase.WINDOW, start)
        r.enter(Phase.WIND_DOWN, 20.0 + start)
    both = Recorder.combine([Recorder.from_wire(r.to_wire()) for r in (a, b)])
    assert (both.window_from, both.window_to) == (5.0, 23.0)
    assert both.phases["window"] == 5.0
    assert Recorder.combine([a, never]).window_from is None


def test_refusals_are_not_errors_anywhere() -> None:
    rec = windowed()
    rec.record("im-invite", 1.0, 0.001, "FAILED_PRECONDITION")
    rec.record("send", 1.0, 0.001, "UNAVAILABLE")
    assert rec.errors == 1  # the progress line's count
    assert rec.seconds[1].errors == 1
    r = report.build(rec, {}, {"min_window": 10}, report.Thresholds(), health=healthy())
    assert r["total_errors"] == r["window_errors"] == 1


def test_cpu_percent_from_cpu_seconds() -> None:
    fe = FrontEndSeries("x")
    fe.add(0.0, 100.0, {"cpu_seconds": 10.0})
    fe.add(1.0, 101.0, {"cpu_seconds": 10.5})
    fe.add(2.0, 103.0, {"cpu_seconds": 11.0})
    assert [s[1] for s in fe.samples] == [50.0, 25.0]
    assert fe.cpu_mean() == 37.5
    assert fe.cpu_max(since=1.5) == 25.0


def test_verdict_from_the_window_and_files(tmp_path: Path) -> None:
    rec = windowed(start=10.0, end=40.0)
    rec.record("send", 2.0, 3.0, "OK")  # the ramp: slow, not held against the pool
    for _ in range(95):
        rec.record("send", 12.0, 0.002, "OK")
    for _ in range(5):
        rec.record("send", 12.0, 0.5, "OK")
    rec.record("im-invite", 12.0, 0.001, "FAILED_PRECONDITION")  # a refusal, not an error
    rec.count("ledger_checked", 3)
    fe = FrontEndSeries("x")
    fe.add(11, 0, {"cpu_seconds": 0.0})
    fe.add(12, 1, {"cpu_seconds": 0.9})
    r = report.build(
        rec,
        {"fe-1": fe},
        {"edition": "standard", "min_window": 10},
        report.Thresholds(),
        health=healthy(),
    )
    checks = {c["check"].split(" (")[0]: c["status"] for c in r["verdict"]["checks"]}
    assert checks["measurement window"] == "ok"
    assert checks["load generator"] == "ok"
    assert checks["front-end processor"] == "fail"  # 90% of a core
    assert checks["p99 latency in the window"] == "fail"  # 5 of 100 at 500 ms
    assert checks["errors in the window"] == "ok"
    assert r["operations"]["send"]["window"]["calls"] == 100
    assert r["verdict"]["result"] == "FAIL"
    assert r["verdict"]["pass"] is False
    paths = report_files.write(r, tmp_path)
    assert [p.name for p in paths] == [
        "report.json",
        "operations.csv",
        "timeseries.csv",
        "report.html",
    ]
    assert json.loads(paths[0].read_text())["operations"]["send"]["calls"] == 101
    page = paths[3].read_text()
    assert 'id="chart-throughput"' in page
    assert "cdn." not in page.split("<script", 2)[1][:200]  # plotly.js is inline
    assert paths[1].read_text().splitlines()[0].startswith("operation,calls,errors")


def test_no_window_is_inconclusive_never_pass_or_fail() -> None:
    rec = Recorder()
    rec.enter(Phase.RAMP, 0.0)
    for _ in range(10):
        rec.record("poll", 1.0, 0.9, "OK")  # slow ramp data only
    rec.enter(Phase.WIND_DOWN, 12.0)
    h = healthy()
    h["driver"]["window_blocked_by"] = ["12 sign-ins still pending"]
    r = report.build(rec, {}, {"min_window": 10}, report.Thresholds(), health=h)
    assert r["verdict"]["result"] == "INCONCLUSIVE"
    window = r["verdict"]["checks"][0]
    assert window["status"] == "inconclusive"
    assert "12 sign-ins still pending" in window["measured"]
    assert "no clean measurement window" in " ".join(r["verdict"]["reasons"])
    short = windowed(start=5.0, end=8.0)  # a window, but 3 s of it
    assert (
        report.build(short, {}, {"min_window": 10}, report.Thresholds(), health=healthy())[
            "verdict"
        ]["result"]
        == "INCONCLUSIVE"
    )


@pytest.mark.parametrize(
    ("cpu", "lag", "late", "why"),
    [
        (95.0, 1.0, 0, "processor 95%"),
        (20.0, 45.0, 0, "event-loop lag p99 45.0 ms"),
        (20.0, 1.0, 5, "5 late starts"),
    ],
)
def test_a_saturated_driver_makes_the_run_inconclusive(
    cpu: float, lag: float, late: int, why: str
) -> None:
    rec = windowed()
    for _ in range(100):
        rec.record("poll", 1.0, 0.5, "OK")  # slow: but the driver, not the pool
    for _ in range(late):
        rec.late("poll", 1.0)
    r = report.build(rec, {}, {"min_window": 10}, report.Thresholds(), health=healthy(cpu, lag))
    assert r["driver"]["saturated"] is True
    assert r["verdict"]["result"] == "INCONCLUSIVE"
    assert why in r["verdict"]["reasons"][0]
    # a busy driver needs more processes; a starved one (lagging at a low processor) a
    # quieter machine
    advice = "--workers" if cpu > 50 else "quieter machine"
    assert advice in r["verdict"]["reasons"][0]
    assert "verdict: INCONCLUSIVE" in report_files.text(r)


@pytest.mark.parametrize(("longest", "result"), [(203.0, "INCONCLUSIVE"), (60.0, "FAIL")])
def test_a_p99_over_the_target_while_the_driver_stalled_as_long_is_not_held_against_the_pool(
    longest: float, result: str
) -> None:
    """One stall of the driver's own loop (a collection, the machine) makes every call in
    flight slow, and with a few dozen calls of an operation its p99 is its slowest call."""
    rec = windowed()
    for _ in range(30):
        rec.record("conference-create", 1.0, 0.003, "OK")
    rec.record("conference-create", 1.0, 0.234, "OK")
    health = healthy(lag=1.9, longest=longest)
    r = report.build(rec, {}, {"min_window": 10}, report.Thresholds(), health=health)
    latency = next(c for c in r["verdict"]["checks"] if c["check"].startswith("p99 latency"))
    assert r["driver"]["saturated"] is False
    assert r["verdict"]["result"] == result
    if result == "INCONCLUSIVE":
        assert latency["status"] == "inconclusive"
        assert "the load driver itself stalled 203 ms" in latency["measured"]
        assert "stalled 203 ms in the window" in r["verdict"]["reasons"][0]
    else:
        assert latency["status"] == "fail"
        assert r["verdict"]["reasons"] == []
    assert f"longest {longest:.0f} ms" in report_files.text(r)


def test_a_lost_write_fails_even_a_saturated_run() -> None:
    rec = windowed()
    rec.count("ledger_checked", 5)
    rec.count("ledger_lost", 1)
    r = report.build(rec, {}, {"min_window": 10}, report.Thresholds(), health=healthy(99.0))
    assert r["verdict"]["result"] == "FAIL"


def _summary(**changes: object) -> dict[str, object]:
    """A ``Failover.summary()`` of a crash at 5 s, served again after 1 s."""
    base: dict[str, object] = {
        "front_end": "fe2",
        "requested": "most signed-in users",
        "planned_at": 5.0,
        "killed_at": 5.0,
        "kill_answered_after": 0.01,
        "pool_failed_over_after": 0.5,
        "first_reregistered_after": 0.4,
        "all_reregistered_after": 0.8,
        "first_affected_success_after": 1.0,
        "affected_served_median_after": 1.5,
        "affected_served_last_after": 2.0,
        "window_end": 6.0,
        "signed_in_users_at_kill": 10,
        "affected_users": 4,
        "affected_endpoints": 6,
        "affected_users_served_again": 4,
        "error": "",
    }
    return {**base, **changes}


def _failover_report(rec: Recorder, **changes: object) -> dict[str, Any]:
    return report.build(
        rec,
        {"fe1": FrontEndSeries("x"), "fe2": FrontEndSeries("y")},
        {"edition": "enterprise", "duration": 10.0, "speedup": 1.0, "min_window": 5},
        report.Thresholds(),
        pool=[(1.0, 30.0, 2), (2.0, 10.0, 1)],
        failover=_summary(**changes),
        health=healthy(),
    )


def test_a_deliberate_fail_over_keeps_its_errors_apart_but_not_lost_writes() -> None:
    rec = windowed(start=0.0, end=10.0)
    for _ in range(100):
        rec.record("poll", 1.0, 0.002, "OK")
    for _ in range(10):  # caught in the fail-over: 10% errors, and slow
        rec.record("poll", 5.2, 0.9, "UNAVAILABLE", failover=True)
    rec.record("poll", 5.3, 0.9, "OK", failover=True)
    rec.record("im-invite", 5.2, 0.001, "FAILED_PRECONDITION", failover=True)  # a refusal
    rec.count("ledger_checked", 20)
    rec.count("ledger_checked_affected", 8)
    rec.count("sessions_reconnected", 6)
    rec.count("session_reconnections", 7)
    assert rec.window["poll"].codes == {"OK": 100}  # the fail-over stays out of the window
    r = _failover_report(rec)
    checks = {c["check"]: c for c in r["verdict"]["checks"]}
    errors = next(c for name, c in checks.items() if name.startswith("errors in the window"))
    assert errors["ok"] is True
    assert errors["measured"].startswith("0 of 100")
    assert checks["acknowledged writes lost (read back after the fail-over)"]["ok"] is True
    assert checks["acknowledged writes of affected users read back"]["ok"] is True
    assert checks["fail-over of fe2: affected users served again"]["ok"] is True
    assert r["verdict"]["result"] == "PASS"
    fo = r["failover"]
    assert fo["operations_caught"] == 12
    assert fo["operations_failed"] == 10
    assert fo["failed_by_code"] == {"UNAVAILABLE": 10}
    assert fo["sessions_reconnected"] == 6
    assert r["pool"]["cpu_total_mean"] == 20.0
    assert r["pool"]["cpu_mean_per_front_end"] == 12.5
    text = report_files.text(r)
    assert "fail-over: fe2 crashed at 5.00 s" in text
    assert "operations failed during the fail-over: 10 of 12" in text

    rec.count("ledger_lost")  # one acknowledged write lost: the run fails
    lost = _failover_report(rec)
    assert lost["verdict"]["result"] == "FAIL"


def test_a_drill_that_read_back_nothing_of_the_affected_users_is_inconclusive() -> None:
    rec = windowed(start=0.0, end=10.0)
    rec.record("poll", 1.0, 0.002, "OK")
    rec.count("ledger_checked", 20)  # none of them an affected user's
    r = _failover_report(rec)
    check = next(
        c
        for c in r["verdict"]["checks"]
        if c["check"] == "acknowledged writes of affected users read back"
    )
    assert check["status"] == "inconclusive"
    assert r["verdict"]["result"] == "INCONCLUSIVE"


def test_a_fail_over_that_never_served_the_affected_users_fails() -> None:
    rec = windowed(start=0.0, end=10.0)
    rec.record("poll", 1.0, 0.002, "OK")
    rec.count("ledger_checked_affected", 1)
    r = _failover_report(
        rec,
        affected_users_served_again=0,
        first_affected_success_after=None,
        affected_served_median_after=None,
        affected_served_last_after=None,
        window_end=None,
    )
    assert r["verdict"]["result"] == "FAIL"
    not_killed = _failover_report(rec, killed_at=None, error="the run ended before the kill")
    assert not_killed["verdict"]["pass"] is False
    assert "no front end was killed" in report_files.text(not_killed)


def test_the_store_queue_latency_is_judged_from_the_pools_histogram() -> None:
    import math

    from bench.server_latency import STORE, Buckets, parse

    page = (
        "# TYPE poolsim_store_write_seconds histogram\n"
        'poolsim_store_write_seconds_bucket{le="0.01"} 90\n'
        'poolsim_store_write_seconds_bucket{le="0.5"} 100\n'
        'poolsim_store_write_seconds_bucket{le="+Inf"} 100\n'
        "poolsim_store_write_seconds_count 100\n"
        "poolsim_store_write_seconds_sum 3.0\n"
    )
    assert parse(page)[(STORE, "OK")].count == 100
    rec = windowed()
    rec.record("publish", 1.0, 0.002, "OK")
    slow = Buckets([0.01, 0.5, math.inf], [90.0, 100.0, 100.0])  # p99 in (10 ms, 500 ms]
    r = report.build(
        rec, {}, {"min_window": 10}, report.Thresholds(), health=healthy(), server={STORE: slow}
    )
    check = next(c for c in r["verdict"]["checks"] if c["check"].startswith("store queue"))
    assert check["status"] == "fail"
    assert r["server_latency"]["store_write_p99_ms"] == pytest.approx(451.0)


def test_the_progress_line_counts_errors_as_the_report_does() -> None:
    from types import SimpleNamespace

    from bench.terminal import Progress

    rec = windowed()
    rec.record("im-invite", 1.0, 0.001, "FAILED_PRECONDITION")  # a refusal
    rec.record("send", 1.0, 0.001, "UNAVAILABLE")
    rec.record("poll", 1.0, 0.001, "DEADLINE_EXCEEDED")
    driver = SimpleNamespace(rec=rec, now=lambda: 12.0, phase=Phase.WINDOW, sessions={1: []})
    line = Progress(driver, 30.0, enabled=False).line()  # type: ignore[arg-type]
    r = report.build(rec, {}, {"min_window": 10}, report.Thresholds(), health=healthy())
    assert f"errors {r['total_errors']:>5}" in line
    assert r["total_errors"] == 2
    assert "window 12 s" in line
