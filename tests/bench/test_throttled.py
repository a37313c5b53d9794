"""The pool's "server too busy" as the driver, the report and the plan count it: THROTTLED,
apart from errors, and the pool's own limit in a plan."""

from __future__ import annotations

from bench import plan_points as plan
from bench.driver_config import code_of
from bench.stats import THROTTLED, OpStats, Recorder, is_error
from pool.errors import ServerTooBusy, Unavailable
from tests.bench.test_capacity import saturated_at_the_pools_limit


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
