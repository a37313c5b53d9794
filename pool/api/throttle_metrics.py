"""The metrics of overload (``pool.throttle``), read from the engine when scraped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pool.engine import Engine


class ThrottleCollector(Collector):
    """Overload (``pool.throttle``), named after Lync's counters: Local 503 Responses,
    Flow-controlled Connections, the average holding time and the store queue latency."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        e = self._engine
        t = e.throttle
        local = CounterMetricFamily(
            "poolsim_local_503_responses",
            "Requests answered 'server too busy' (UNAVAILABLE with a retry-after) by this front "
            "end (Lync: Local 503 Responses), by reason",
            labels=["reason"],
        )
        local.add_metric(["store-queue-latency"], t.refused)
        local.add_metric(["held-too-long"], t.closed)
        yield local
        yield GaugeMetricFamily(
            "poolsim_flow_controlled_connections",
            "Endpoints limited to the flow-controlled number of outstanding requests now "
            "(Lync: Flow-controlled Connections)",
            value=t.flow_controlled(len(e.registrar)),
        )
        yield CounterMetricFamily(
            "poolsim_flow_control_episodes",
            "Times the front end went into flow control (average holding time over its limit)",
            value=t.episodes,
        )
        yield CounterMetricFamily(
            "poolsim_flow_control_held_requests",
            "Requests that waited at the door behind their endpoint's outstanding ones",
            value=t.held,
        )
        yield GaugeMetricFamily(
            "poolsim_average_holding_time_seconds",
            "Average holding time of incoming requests over the last sample, the front end's "
            "loop lag included (Lync: Average Holding Time For Incoming Messages)",
            value=t.average,
        )
        yield GaugeMetricFamily(
            "poolsim_store_queue_latency_seconds",
            "How long the latest store write took (Lync: DBStore queue latency)",
            value=t.store_latency,
        )
