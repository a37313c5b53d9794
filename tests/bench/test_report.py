"""Histogram and report maths."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.probe import FrontEndSeries
from bench.stats import Recorder, summary


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


def test_cpu_percent_from_cpu_seconds() -> None:
    fe = FrontEndSeries("x")
    fe.add(0.0, 100.0, {"cpu_seconds": 10.0})
    fe.add(1.0, 101.0, {"cpu_seconds": 10.5})
    fe.add(2.0, 103.0, {"cpu_seconds": 11.0})
    assert [s[1] for s in fe.samples] == [50.0, 25.0]
    assert fe.cpu_mean() == 37.5
    assert fe.cpu_max(since=1.5) == 25.0


def test_verdict_and_files(tmp_path: Path) -> None:
    rec = Recorder()
    for _ in range(95):
        rec.record("send", 0, 0.002, "OK")
    for _ in range(5):
        rec.record("send", 0, 0.5, "OK")
    rec.record("im-invite", 0, 0.001, "FAILED_PRECONDITION")  # a refusal, not an error
    rec.count("ledger_checked", 3)
    fe = FrontEndSeries("x")
    fe.add(0, 0, {"cpu_seconds": 0.0})
    fe.add(1, 1, {"cpu_seconds": 0.9})
    r = report.build(rec, {"fe-1": fe}, {"edition": "standard"}, 0.0, report.Thresholds())
    checks = {c["check"].split(" (")[0]: c["ok"] for c in r["verdict"]["checks"]}
    assert checks["front-end processor"] is False  # 90% of a core
    assert checks["p99 latency after the ramp"] is False  # 5 of 100 at 500 ms
    assert checks["errors"] is True
    assert r["total_errors"] == 0
    assert r["verdict"]["pass"] is False
    paths = report.write(r, tmp_path)
    assert [p.name for p in paths] == [
        "report.json",
        "operations.csv",
        "timeseries.csv",
        "report.html",
    ]
    assert json.loads(paths[0].read_text())["operations"]["send"]["calls"] == 100
    assert "<svg" in paths[3].read_text()
    assert paths[1].read_text().splitlines()[0].startswith("operation,calls,errors")


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
        {"edition": "enterprise", "duration": 10.0, "speedup": 1.0},
        0.0,
        report.Thresholds(),
        pool=[(1.0, 30.0, 2), (2.0, 10.0, 1)],
        failover=_summary(**changes),
    )


def test_a_deliberate_fail_over_keeps_its_errors_apart_but_not_lost_writes() -> None:
    rec = Recorder()
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
    assert rec.steady["poll"].codes == {"OK": 100}  # the fail-over stays out of steady
    r = _failover_report(rec)
    checks = {c["check"]: c for c in r["verdict"]["checks"]}
    errors = next(c for name, c in checks.items() if name.startswith("errors outside"))
    assert errors["ok"] is True
    assert errors["measured"].startswith("0 of 112")
    assert checks["acknowledged writes lost (read back after the fail-over)"]["ok"] is True
    assert checks["fail-over of fe2: affected users served again"]["ok"] is True
    assert r["verdict"]["pass"] is True
    fo = r["failover"]
    assert fo["operations_caught"] == 12
    assert fo["operations_failed"] == 10
    assert fo["failed_by_code"] == {"UNAVAILABLE": 10}
    assert fo["sessions_reconnected"] == 6
    assert r["pool"]["cpu_total_mean"] == 20.0
    assert r["pool"]["cpu_mean_per_front_end"] == 12.5
    text = report.text(r)
    assert "fail-over: fe2 crashed at 5.00 s" in text
    assert "operations failed during the fail-over: 10 of 12" in text

    rec.count("ledger_lost")  # one acknowledged write lost: the run fails
    lost = _failover_report(rec)
    assert lost["verdict"]["pass"] is False


def test_a_fail_over_that_never_served_the_affected_users_fails() -> None:
    rec = Recorder()
    rec.record("poll", 1.0, 0.002, "OK")
    r = _failover_report(
        rec,
        affected_users_served_again=0,
        first_affected_success_after=None,
        affected_served_median_after=None,
        affected_served_last_after=None,
        window_end=None,
    )
    assert r["verdict"]["pass"] is False
    not_killed = _failover_report(rec, killed_at=None, error="the run ended before the kill")
    assert not_killed["verdict"]["pass"] is False
    assert "no front end was killed" in report.text(not_killed)
