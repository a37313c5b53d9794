"""What an Enterprise front end adds to its metrics: the pool as its routing table shows it
(front ends up, routing groups by state, promotions and the fabric's other counters), and its
own cross-node traffic (batch sizes, replication latency).

The pool-level series (``poolsim_pool_*``: front ends up, routing groups by state, promotions,
rebuilds, reloads, primary moves) describe the whole pool, so one front end exports them: the
lowest-numbered front end that is up in its routing table (the pool's reporter). Summed or
taken as ``max`` over the pool's front ends they are right; while a new routing table
spreads, two front ends may export them for a moment, so dashboards use ``max``. Everything
else is per front end and sums.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from enterprise.link import Links
from enterprise.peers import PeerClient
from enterprise.routing import Routing
from enterprise.routing_table import RoutingTable

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
_REPLICATION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)

_COUNTERS = {
    "promotions": "Secondaries promoted to primary after their primary's front end left",
    "rebuilds": "Replica copies made to rebuild missing secondaries",
    "reloads": "Routing groups reloaded from the back-end store",
    "primary_moves": "Primaries moved by rebalancing",
    "catch_ups": "Returning replicas brought up to date with only the writes they missed",
    "recoveries": "Routing groups out of quorum loss because their replicas came back",
    "rebalances": "Times primaries were rebalanced on their own once the pool was whole again",
    "restarts": "Crashed front ends started again by themselves (Ray's actor restart)",
    "writes_caught_up": "Writes sent to returning replicas to bring them up to date",
    "writes_lost_in_recovery": (
        "Acknowledged writes held by surviving replicas and lost to quorum-loss recovery"
    ),
}


class CrossNodeHistograms:
    """A front end's cross-node traffic: created before the node, which is handed ``batch``
    and ``replication`` to tell them what it sends."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_sizes = Histogram(
            "poolsim_cross_node_batch_items",
            "Items (events, requests, replicated writes) per Ray call to another front end",
            registry=registry,
            buckets=_BATCH_BUCKETS,
        )
        self.replication_seconds = Histogram(
            "poolsim_replication_seconds",
            "A write's wait until every live secondary of its routing group applied it",
            registry=registry,
            buckets=_REPLICATION_BUCKETS,
        )

    def batch(self, items: int) -> None:
        self.batch_sizes.observe(items)

    def replication(self, seconds: float) -> None:
        self.replication_seconds.observe(seconds)


class EnterpriseCollector(Collector):
    """The pool as this front end's routing table shows it, and its links' counters."""

    def __init__(
        self,
        routing: Routing,
        links: Links,
        registry: CollectorRegistry,
        peers: PeerClient | None = None,
    ) -> None:
        self.routing = routing
        self.links = links
        self.peers = peers
        self.counters: dict[str, int] = {}
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        table = self.routing.table
        if table is not None and reporter(table.addresses) == self.routing.fe_id:
            yield from self._pool_series(table)
        yield GaugeMetricFamily(
            "poolsim_routing_table_version",
            "Version of the routing table this front end routes by",
            value=table.version if table is not None else 0,
        )
        yield GaugeMetricFamily(
            "poolsim_primaries_here",
            "Routing groups whose primary is here",
            value=len(self.routing.loaded),
        )
        yield CounterMetricFamily(
            "poolsim_cross_node_events_dropped",
            "Items dropped because the link to another front end was full",
            value=self.links.dropped_posts,
        )
        if self.peers is not None:
            yield CounterMetricFamily(
                "poolsim_cross_node_connections_opened",
                "Connections this front end opened to the others for its batches (direct peer "
                "links); more than one per other front end: links broke and were opened again",
                value=self.peers.opened,
            )

    def _pool_series(self, table: RoutingTable) -> Iterator[Metric]:
        up = len(table.addresses)
        yield GaugeMetricFamily(
            "poolsim_pool_front_ends_up", "Front ends up, as the routing table says", value=up
        )
        states = GaugeMetricFamily(
            "poolsim_pool_routing_groups",
            "Routing groups by state: healthy (3 live replicas), degraded (2), not served",
            labels=["state"],
        )
        counts = {"healthy": 0, "degraded": 0, "not-served": 0}
        for home, secondaries in zip(table.homes, table.secondaries, strict=True):
            if not home:
                counts["not-served"] += 1
            elif len(secondaries) >= 2:
                counts["healthy"] += 1
            else:
                counts["degraded"] += 1
        for state, n in counts.items():
            states.add_metric([state], n)
        yield states
        for name, doc in _COUNTERS.items():
            yield CounterMetricFamily(f"poolsim_pool_{name}", doc, value=self.counters.get(name, 0))


def reporter(up: Iterable[str]) -> str:
    """The front end that exports the pool-level series: the lowest-numbered one up."""
    return min(up, key=lambda fe: (len(fe), fe), default="")
