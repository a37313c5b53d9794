"""The pool's "server too busy" as the driver, the report and the plan count it: THROTTLED,
apart from errors, and the pool's own limit in a plan."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import plan_points as plan
from bench import report, report_files
from bench.driver_config import code_of
from bench.probe import FrontEndSeries
from bench.stats import THROTTLED, OpStats, Recorder, is_error
from pool.config import Throttling
from pool.errors import ServerTooBusy, Unavailable
from tests.bench.test_capacity import saturated_at_the_pools_limit
from tests.bench.test_report import healthy, windowed


def test_too_busy_is_counted_throttled_not_as_an_error() -> None:
    assert code_of(ServerTooBusy("busy", 10.0, "SERVER_TOO_BUSY")) == THROTTLED
    assert code_of(Unavailable("the front end is shutting down")) == "UNAVAILABLE"
    assert not is_error("publish", THROTTLED)
    stats = OpStats()
    stats.record(0.001, THROTTLED)
    stats.record(0.001, "UNAVAILABLE")
    assert (stats.calls, stats.errors("publish"), stats.throttled) == (2, 1, 1)
    rec = Recorder()
    rec.record("publish", 1.0, 0.001, THROTTLED)
    assert rec.errors == 0


def test_throttling_past_the_knee_is_the_pools_limit_not_the_drivers() -> None:
    r = saturated_at_the_pools_limit()
    r["front_ends"]["fe1"]["cpu_mean"] = 40.0  # nothing else pool-side failed
    r["operations"]["poll"]["window"] |= {"calls": 1000, "codes": {"OK": 1000}}
    assert plan.classify(r)[0] == plan.DRIVER
    r["operations"]["poll"]["window"]["codes"][THROTTLED] = 30
    kind, limit, note = plan.classify(r)
    assert kind == plan.POOL
    assert limit.startswith("the pool throttled: 30 of 1000 calls answered 'server too busy'")
    assert note.startswith("the driver was saturated too")


def test_the_overload_settings_reach_the_pool_a_run_starts() -> None:
    import argparse

    from bench.run_options import RunOptions, pool_settings
    from pool.config import Throttling
    from pool.serve_options import add_arguments, engine_config

    opts = RunOptions(throttling=Throttling(store_latency_limit=0.5, retry_after=1.0))
    got = pool_settings(opts)
    assert got["settings"]["store_latency_limit"] == 0.5
    assert got["settings"]["retry_after"] == 1.0
    assert "holding_time_limit" not in got["settings"]  # Lync's: not passed
    assert {d["setting"] for d in got["differ_from_serve"]} >= {"store_latency_limit"}
    # as `poolsim run` passes them to `poolsim serve`
    p = argparse.ArgumentParser()
    add_arguments(p, ["standard"])
    args = [
        arg
        for key, value in got["settings"].items()
        for arg in (f"--{key.replace('_', '-')}", str(value))
    ]
    config = engine_config(p.parse_args(args))
    assert config.throttling == opts.throttling
    assert engine_config(p.parse_args([])).throttling == Throttling()  # Lync's by default


def flow_controlled_run(
    held_before: float, held_after: float, at: tuple[int, ...]
) -> dict[str, Any]:
    """A report whose one front end had held ``held_before`` requests before the window (which
    opens at 10 s) and ``held_after`` by its end, in flow control at the seconds ``at``."""
    rec = windowed(start=10.0, end=40.0)
    for _ in range(100):
        rec.record("send", 12.0, 0.002, "OK")
    fe = FrontEndSeries("x")
    for k, t in enumerate((5, 8, 9, 12, 13, 14)):
        held = held_after if t == 14 else held_before
        busy = t in at
        figures = {"cpu_seconds": 0.3 * k, "holding_s": 0.4 if busy else 0.01, "held": held}
        fe.add(t, 100 + k, figures | {"flow_controlled": 3.0 if busy else 0.0})
    config = {
        "edition": "standard",
        "min_window": 10,
        "duration": 40.0,
        "throttling": asdict(Throttling(holding_time_limit=0.1, holding_time_release=0.05)),
    }
    return report.build(rec, {"fe-1": fe}, config, report.Thresholds(), health=healthy())


def test_flow_control_in_the_window_is_the_pools_limit() -> None:
    r = flow_controlled_run(held_before=5.0, held_after=25.0, at=(12, 13))
    fe = r["front_ends"]["fe-1"]
    assert (fe["held"], fe["flow_controlled_s"], fe["holding_max_s"]) == (20.0, 2.0, 0.4)
    check = next(c for c in r["verdict"]["checks"] if c["check"].startswith("flow control"))
    assert check["status"] == "fail"
    assert check["measured"].startswith("20 requests held at the door; 2 s in flow control")
    assert "(limit 0.1 s)" in check["measured"]
    assert r["verdict"]["result"] == "FAIL"
    kind, limit, _ = plan.classify(r)
    assert kind == plan.POOL
    assert limit.startswith("average holding time up to 400 ms > 100 ms")  # over the p99 too
    assert (
        "; the pool went into flow control for 2 s (average holding time up to 0.40 s, "
        "limit 0.1 s): 20 requests held at the door" in limit
    )
    point = plan.point_from_report(r, users=100, ramp=5.0, folder=Path("x"))
    assert (point.held, point.holding_max_s, point.passed) == (20, 0.4, False)
    assert "flow control 2 s, 20 requests held" in report_files.text(r)


def test_flow_control_only_in_the_ramp_is_not_held_against_the_window() -> None:
    r = flow_controlled_run(held_before=5.0, held_after=5.0, at=(8, 9))
    fe = r["front_ends"]["fe-1"]
    assert (fe["held"], fe["flow_controlled_s"]) == (0.0, 0.0)
    assert not any(c["check"].startswith("flow control") for c in r["verdict"]["checks"])
    assert plan.pool_side_failures(r) == []


def test_past_the_knee_flow_control_without_a_window_is_the_pools_limit() -> None:
    """The pool held so many calls at the door that the driver ran out of slots and the
    backlog never drained: the pool's defence, not the driver's limit (seen at 6,750 users
    x speedup 20 on one core: 27,772 requests held, the driver 'saturated')."""
    r = saturated_at_the_pools_limit()
    r["front_ends"]["fe1"]["cpu_mean"] = 40.0
    r["window"] = {"seconds": 0.0, "blocked_by": ["backlog: 1797 calls in flight"]}
    assert plan.classify(r)[0] == plan.DRIVER  # nothing of the pool's: the driver's limit
    r["front_ends"]["fe1"] |= {"held": 27772.0, "flow_controlled_s": 32.0, "holding_max_s": 0.57}
    kind, limit, note = plan.classify(r)
    assert kind == plan.POOL
    assert limit.startswith("the pool went into flow control for 32 s")
    assert note.startswith("no measurement window (backlog: 1797 calls in flight)")
    assert "the driver ran short too" in note
    point = plan.point_from_report(r, users=6750, ramp=100.0, folder=Path("x"), speedup=20.0)
    assert (point.passed, point.limit_kind, point.held) == (False, plan.POOL, 27772)


def test_a_run_without_a_window_shows_its_defences_at_the_runs_rate() -> None:
    from bench.plan_chart import defence_chart, x_top

    passed = {"users": 4500, "front_ends": 1, "per_fe": 90_000.0, "throughput": 3018.0}
    past = {"users": 6750, "front_ends": 1, "per_fe": 135_000.0, "throughput": 0.0}
    doc = {
        "points": [
            passed | {"window_s": 30.0, "duration": 75.0},
            past | {"window_s": 0.0, "duration": 100.0, "held": 4315, "flow_controlled_s": 9.0},
        ]
    }
    chart = defence_chart(doc)
    assert chart is not None
    (held,) = [t for t in chart.figure.data if t.type == "bar"]  # no "too busy": no bar
    assert list(held.y) == [0.0, 43.15]
    assert list(chart.figure.layout.xaxis.range) == [0, x_top(doc)] == [0, 135_000.0 * 1.1]
