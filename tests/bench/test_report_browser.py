"""report.html and plan.html in a real browser: headless Chromium (Debian's ``chromium``)
loads the page offline and every chart is drawn (plotly adds its SVG to each chart's div).
Skipped where Chromium is not installed (``.ci/run`` installs it)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from bench import charts, memory, plan, report, report_files
from bench.plan_chart import defence_chart, plan_chart
from bench.probe import FrontEndSeries
from bench.server_latency import Buckets
from bench.stats import Phase, Recorder

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def dump_dom(page: Path) -> str:
    """The page's DOM after its scripts ran, with the network off."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="poolsim-chromium-") as profile:
        done = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return done.stdout


def rendered(dom: str) -> set[str]:
    """The ids of the chart divs plotly drew into."""
    drawn = set()
    for m in re.finditer(r'<div id="chart-([\w-]+)" class="([^"]*)"', dom):
        if "js-plotly-plot" in m.group(2):
            drawn.add(m.group(1))
    return drawn if "main-svg" in dom else set()


def full_report() -> dict[str, Any]:
    """A report with every chart's data: a window, a kill, two front ends, the driver, the
    pool's histograms and memory samples."""
    rec = Recorder()
    rec.enter(Phase.RAMP, 0.0)
    rec.enter(Phase.SETTLING, 4.0)
    rec.enter(Phase.WINDOW, 6.0)
    for t in range(30):
        for k in range(20):
            rec.record("poll", t + k / 20, 0.002 + 0.001 * (k % 5), "OK")
            rec.record("send", t + k / 20, 0.003, "OK" if k else "UNAVAILABLE")
    rec.enter(Phase.WIND_DOWN, 30.0)
    fronts = {}
    for fe in ("fe1", "fe2"):
        s = FrontEndSeries(fe)
        for t in range(31):
            busy = 12 <= t < 18  # a spell of flow control
            figures = {"cpu_seconds": t * 0.3, "endpoints": 100.0 + t, "held": t // 2}
            s.add(float(t), float(t), figures | {"holding_s": 8.0 if busy else 0.5 + t / 60})
        fronts[fe] = s
    health = {
        "driver": {
            "cpu_mean": 30.0,
            "cpu_max": 40.0,
            "loop_lag_p50_ms": 0.5,
            "loop_lag_p99_ms": 3.0,
            "loop_lag_max_ms": 9.0,
            "window_blocked_by": [],
            "samples": [[float(t), 30.0 + t % 7, 1.0 + t % 3, 4] for t in range(30)],
        }
    }
    server = {
        "GetPresence": Buckets([0.0001, 0.001, 0.01, math.inf], [300.0, 590.0, 600.0, 600.0]),
        "SendMessage": Buckets([0.0001, 0.001, 0.01, math.inf], [100.0, 570.0, 580.0, 580.0]),
    }
    r = report.build(
        rec,
        fronts,
        {
            "edition": "enterprise",
            "min_window": 10,
            "thresholds": {"p99_ms": 100.0, "cpu_percent": 80.0},
            "throttling": {"holding_time_limit": 6.0, "holding_time_release": 3.0},
        },
        report.Thresholds(),
        pool=[(float(t), 60.0, 2) for t in range(31)],
        failover={
            "front_end": "fe2",
            "requested": "most signed-in users",
            "planned_at": 15.0,
            "killed_at": 15.0,
            "kill_answered_after": 0.01,
            "pool_failed_over_after": 0.5,
            "first_reregistered_after": 0.4,
            "all_reregistered_after": 0.8,
            "first_affected_success_after": 1.0,
            "affected_served_median_after": 1.5,
            "affected_served_last_after": 2.0,
            "window_end": 16.0,
            "signed_in_users_at_kill": 10,
            "affected_users": 4,
            "affected_endpoints": 6,
            "affected_users_served_again": 4,
            "error": "",
        },
        health=health,
        server=server,
    )
    r["memory"] = memory.section(
        [
            {"t": float(t), "driver": 300e6 + t * 1e5, "front_ends": {"fe1": 250e6, "fe2": 260e6}}
            for t in range(0, 30, 5)
        ],
        warm_up_s=5.0,
    )
    return r


def test_every_chart_of_the_run_report_is_drawn(tmp_path: Path) -> None:
    r = full_report()
    expected = {c.key for c in charts.run_charts(r)}
    assert expected == {
        "throughput",
        "latency",
        "percentiles",
        "processor",
        "endpoints",
        "holding",
        "client-server",
        "driver",
        "memory",
    }
    page = report_files.write(r, tmp_path)[3]
    assert rendered(dump_dom(page)) == expected


def test_the_plan_chart_is_drawn(tmp_path: Path) -> None:
    points = []
    for users, x, ok in (
        (200, 100.0, True),
        (320, 160.0, True),
        (512, 250.0, True),
        (819, 300.0, False),
    ):
        points.append(
            plan.Point(
                users=users,
                signed_in=round(users * 0.8),
                front_ends=1,
                duration=45.0,
                ramp=100.0,
                total_calls=int(x * 30),
                total_errors=0,
                throughput=x,
                worst_p99_ms=20.0 if ok else 300.0,
                worst_operation="poll",
                cpu_percent=users / 10,
                passed=ok,
                speedup=20.0,
                limit_kind=plan.NONE if ok else plan.POOL,
                throttled=0 if ok else 900,  # past the knee the pool throttles
                held=0 if ok else 60,  # and holds requests at the door
                flow_controlled_s=0.0 if ok else 15.0,
                window_s=30.0,
            )
        )
    findings = plan.analyse(points, "bisected")
    doc = plan.plan_document(
        __import__("argparse").Namespace(p99_target_ms=100.0), points, findings, None, None
    )
    assert plan_chart(doc) is not None
    defences = defence_chart(doc)
    assert defences is not None  # past the knee, on its own scale: a few a second show
    bars = {t.name: t for t in defences.figure.data if t.type == "bar"}
    held, busy = (
        bars["held at the door, flow control (requests / s)"],
        bars["answered 'server too busy' (calls / s)"],
    )
    assert (list(held.y), list(busy.y)) == ([0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 30.0])
    assert list(busy.text) == ["", "", "", "30.0"]
    share = next(t for t in defences.figure.data if t.type == "scatter")
    assert list(share.y) == [0.0, 0.0, 0.0, 50.0]
    out = tmp_path / "plan.html"
    out.write_text(plan.plan_html(doc, "summary"))
    assert rendered(dump_dom(out)) == {"plan", "defences"}
    for p in points[:3]:  # a plan that never reached the pool's limit draws no defences
        assert defence_chart({"points": [asdict(p)]}) is None
