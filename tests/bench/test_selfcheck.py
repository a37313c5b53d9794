"""The driver checks itself: when the window opens, the pool's own latency read from its
histogram buckets, and the driver's Prometheus names."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest

from bench.driver import offered_calls_per_s, steady_conferences
from bench.driver_metrics import DriverMetrics
from bench.model import UserModel
from bench.selfcheck import SETTLE_TICKS, Readiness, WindowGate
from bench.server_latency import Buckets, compare, parse, window_histograms
from bench.stats import Phase


def calm(**changes: int) -> Readiness:
    base = {
        "sign_ins_pending": 0,
        "calls_in_flight": 3,
        "started": 100,
        "late": 0,
        "skipped": 0,
        "conferences": 20,
    }
    return Readiness(**{**base, **changes})


def test_the_window_opens_once_everyone_is_in_and_the_backlog_drained() -> None:
    gate = WindowGate(offered_per_s=200.0, conferences=20.0)
    assert not gate.ready(calm(sign_ins_pending=5))
    assert "5 sign-ins still pending" in gate.why[0]
    assert not gate.ready(calm(calls_in_flight=500))  # a backlog: 500 > 200 x 0.05 x 2
    assert "backlog" in gate.why[0]
    assert not gate.ready(calm(late=10))
    for _ in range(SETTLE_TICKS - 1):
        assert not gate.ready(calm())  # drained, but not for long enough yet
    assert gate.ready(calm())
    assert gate.why == []


def test_the_window_waits_for_the_steady_conference_population() -> None:
    gate = WindowGate(offered_per_s=10.0, conferences=26.0)
    floor = 26 - 2 * math.sqrt(26) - 1
    assert gate.conference_floor() == pytest.approx(floor)
    for _ in range(SETTLE_TICKS + 1):
        assert not gate.ready(calm(conferences=3))
    assert "conferences in progress 3, steady level 26" in gate.why[0]
    assert gate.ready(calm(conferences=math.ceil(floor)))


def test_steady_figures_of_the_model() -> None:
    m = UserModel()
    # Little's law: 2,400 users x 5% in a conference / 4.55 members = 26 conferences
    assert steady_conferences(m, 2400, 1.0) == pytest.approx(2400 * 0.05 / 4.55, rel=0.01)
    # a speedup starts conferences 20 times as often and ends them 20 times sooner
    assert steady_conferences(m.scaled(20), 200, 20.0) == pytest.approx(200 * 0.05 / 4.55)
    # polls alone: 60 per hour per user
    assert offered_calls_per_s(m, 3600, 1.0) > 60


PAGE = """# TYPE poolsim_rpc_duration_seconds histogram
poolsim_rpc_duration_seconds_bucket{method="SendMessage",code="OK",le="0.0001"} %d
poolsim_rpc_duration_seconds_bucket{method="SendMessage",code="OK",le="0.001"} %d
poolsim_rpc_duration_seconds_bucket{method="SendMessage",code="OK",le="0.01"} %d
poolsim_rpc_duration_seconds_bucket{method="SendMessage",code="OK",le="+Inf"} %d
poolsim_rpc_duration_seconds_count{method="SendMessage",code="OK"} %d
poolsim_rpc_duration_seconds_sum{method="SendMessage",code="OK"} 0.5
poolsim_rpc_duration_seconds_bucket{method="SendMessage",code="NOT_FOUND",le="+Inf"} 7
poolsim_rpc_duration_seconds_count{method="SendMessage",code="NOT_FOUND"} 7
poolsim_rpc_duration_seconds_sum{method="SendMessage",code="NOT_FOUND"} 0.1
"""


def page(b1: int, b2: int, b3: int, inf: int) -> str:
    return PAGE % (b1, b2, b3, inf, inf)


def test_quantiles_from_buckets_like_histogram_quantile() -> None:
    h = Buckets([0.0001, 0.001, 0.01, math.inf], [50.0, 90.0, 100.0, 100.0])
    assert h.quantile(0.5) == pytest.approx(0.0001)  # the rank falls on the first bound
    # rank 95 of 100: halfway through the (0.001, 0.01] bucket
    assert h.quantile(0.95) == pytest.approx(0.001 + 0.009 * 0.5)
    assert h.quantile(0.25) == pytest.approx(0.00005)  # linear from 0 in the first bucket
    assert Buckets([1.0, math.inf], [0.0, 10.0]).quantile(0.99) == 1.0  # +Inf: largest bound
    assert Buckets().quantile(0.5) is None


def test_the_window_is_the_difference_of_two_scrapes_over_every_front_end() -> None:
    start = {"fe1": parse(page(10, 10, 10, 10)), "fe2": parse(page(0, 0, 0, 0))}
    end = {"fe1": parse(page(60, 100, 110, 110)), "fe2": parse(page(50, 90, 100, 100))}
    h = window_histograms(start, end)
    assert set(h) == {"SendMessage"}  # OK calls only
    send = h["SendMessage"]
    assert send.count == 200
    assert send.counts == [100.0, 180.0, 200.0, 200.0]
    rows = compare(h, {"send": {"p50": 40.0, "p99": 300.0}, "delivery": {"p99": 1.0}})
    assert [r["operation"] for r in rows] == ["send"]  # delivery has no RPC of its own
    assert rows[0]["gap"] is True
    assert rows[0]["server_p99_ms"] == pytest.approx(0.001 * 1000 + 9 * 0.9 * 1, rel=0.01)


def test_driver_metrics_names() -> None:
    from prometheus_client import CollectorRegistry

    m = DriverMetrics(CollectorRegistry())
    m.recorded("poll", 0.002, "OK")
    m.recorded("poll", 0.002, "UNAVAILABLE")
    m.late("poll")
    m.skipped("send")
    m.lag(0.003)
    m.phase(Phase.WINDOW)
    text = generate_latest(m.registry).decode()
    for line in (
        'poolsim_driver_operations_total{code="OK",operation="poll"} 1.0',
        'poolsim_driver_operations_total{code="UNAVAILABLE",operation="poll"} 1.0',
        'poolsim_driver_operation_seconds_count{operation="poll"} 1.0',
        'poolsim_driver_late_starts_total{operation="poll"} 1.0',
        'poolsim_driver_skipped_total{operation="send"} 1.0',
        "poolsim_driver_loop_lag_seconds_count 1.0",
        'poolsim_driver_phase{phase="window"} 1.0',
        'poolsim_driver_phase{phase="ramp"} 0.0',
    ):
        assert line in text
    assert "process_cpu_seconds_total" in text


def test_the_probe_reads_its_four_figures_as_the_prometheus_parser_does() -> None:
    from prometheus_client import CollectorRegistry, Gauge, Histogram
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.process_collector import ProcessCollector

    from bench.probe import WANTED, wanted_figures

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    Gauge("poolsim_endpoints_active", "endpoints", registry=registry).set(123)
    Gauge("poolsim_event_queue_depth", "queued", registry=registry).set(7)
    # a longer name that starts with a wanted one, and labelled samples, are not taken
    h = Histogram("poolsim_endpoints_active_seconds", "x", ["m"], registry=registry)
    h.labels("a").observe(0.5)
    text = generate_latest(registry).decode()
    parsed = {
        WANTED[s.name]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples[:1]
        if s.name in WANTED
    }
    assert set(parsed) == {"cpu_seconds", "rss_bytes", "endpoints", "queue_depth"}
    assert wanted_figures(text) == parsed
    assert wanted_figures("") == {}


def test_the_driver_collects_less_while_it_runs_and_restores_the_collector() -> None:
    import gc

    from bench.collector import GC_THRESHOLDS, freeze_heap, quiet_gc

    before = gc.get_threshold()
    with quiet_gc():
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        with quiet_gc():  # a second driver in the same process
            freeze_heap()
        assert gc.get_threshold() == GC_THRESHOLDS  # still driving
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
