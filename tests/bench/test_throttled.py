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
