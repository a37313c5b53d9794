"""Histogram and report maths."""

from __future__ import annotations

import json
from pathlib import Path

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
