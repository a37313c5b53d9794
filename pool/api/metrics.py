"""Prometheus metrics of one front end, named after the counters capacity planners watch.

Stress-tool and server counters (SPEC section 6) map as follows: active registered endpoints ->
``poolsim_endpoints_active``; logon attempts / failed logons -> ``poolsim_logon_attempts_total``
/ ``poolsim_logon_failures_total``; SetPresence / GetPresence -> ``poolsim_presence_publishes_
total`` / ``poolsim_presence_polls_total``; IM sessions attempted / established, IM messages
sent / received, conferences active and participants, and the server's queue and latency
figures as histograms. Labels come from small fixed sets only (RPC method names, status codes,
reasons): never a user.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pool.observer import Observer

if TYPE_CHECKING:
    from pool.engine import Engine

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_ROUTING_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 0.1)


class Metrics(Observer):
    """Every metric of a front end, on an injected registry. Also the engine's Observer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        # process_cpu_seconds_total and memory: the front-end processor figure of SPEC 6
        ProcessCollector(registry=r)
        self.rpc_duration = Histogram(
            "poolsim_rpc_duration_seconds",
            "gRPC calls by method and status code, server side",
            ["method", "code"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self._rpc_children: dict[tuple[str, str], Histogram] = {}
        self.undecodable_requests = Counter(
            "poolsim_undecodable_requests",
            "Requests whose body could not be parsed as the method's request type",
            ["method"],
            registry=r,
        )
        self.logon_attempts = Counter(
            "poolsim_logon_attempts", "Sign-in attempts (stress tool: logon attempts)", registry=r
        )
        self.logon_failures = Counter(
            "poolsim_logon_failures", "Failed sign-ins by reason", ["reason"], registry=r
        )
        self.publishes = Counter(
            "poolsim_presence_publishes", "Presence publications (SetPresence)", registry=r
        )
        self.polls = Counter(
            "poolsim_presence_polls", "Presence polls (GetPresence calls)", registry=r
        )
        self.polled_users = Counter(
            "poolsim_presence_polled_users", "Users whose presence was polled", registry=r
        )
        self.notifications = Counter(
            "poolsim_presence_notifications",
            "Presence change notifications queued to watchers",
            registry=r,
        )
        self.sessions_attempted = Counter(
            "poolsim_im_sessions_attempted", "IM conversations started", registry=r
        )
        self.sessions_established = Counter(
            "poolsim_im_sessions_established", "Two-party IM invitations accepted", registry=r
        )
        # The per-message figures are plain numbers written by the event loop's thread and read
        # at scrape time: a Prometheus child takes a lock per call, which cost the routing
        # path a third of its throughput (measured by `poolsim bench --only routing-core`).
        self.hot = HotPath()
        r.register(self.hot)
        self.conferences_started = Counter(
            "poolsim_conferences_started",
            "IM conferences created (ad hoc or escalated)",
            registry=r,
        )
        self.dropped = Counter(
            "poolsim_events_dropped",
            "Events dropped because an endpoint's queue was full",
            registry=r,
        )
        self.deregistrations = Counter(
            "poolsim_deregistrations", "Endpoints signed out, by reason", ["reason"], registry=r
        )
        self.store_latency = Histogram(
            "poolsim_store_write_seconds",
            "Writes to the store (Lync: DBStore queue latency)",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.info = Gauge(
            "poolsim_front_end_info",
            "This front end (value is always 1)",
            ["front_end", "edition", "pool"],
            registry=r,
        )

    def watch(self, engine: Engine, edition: str) -> None:
        """Export the engine's gauges (read at scrape time) and this front end's identity."""
        self.registry.register(_EngineCollector(engine))
        self.info.labels(engine.config.front_end_id, edition, engine.config.pool_name).set(1)

    def rpc_done(self, method: str, code: str, seconds: float) -> None:
        """One call's duration. The labelled child is looked up once per method and code:
        ``labels()`` costs as much as the observation itself, on every call."""
        key = (method, code)
        child = self._rpc_children.get(key)
        if child is None:
            child = self._rpc_children[key] = self.rpc_duration.labels(method, code)
        child.observe(seconds)

    def undecodable(self, method: str) -> None:
        self.undecodable_requests.labels(method).inc()

    # --- Observer ---

    def logon(self, ok: bool, reason: str = "") -> None:
        self.logon_attempts.inc()
        if not ok:
            self.logon_failures.labels(reason or "other").inc()

    def presence_published(self) -> None:
        self.publishes.inc()

    def presence_polled(self, users: int) -> None:
        self.polls.inc()
        self.polled_users.inc(users)

    def presence_notified(self, count: int) -> None:
        self.notifications.inc(count)

    def im_session_attempted(self) -> None:
        self.sessions_attempted.inc()

    def im_session_established(self) -> None:
        self.sessions_established.inc()

    def message_sent(self, recipients: int) -> None:
        hot = self.hot
        hot.sent += 1
        hot.delivered += recipients

    def routed(self, seconds: float) -> None:
        hot = self.hot
        hot.routing_counts[bisect_left(_ROUTING_BUCKETS, seconds)] += 1
        hot.routing_sum += seconds

    def events_dropped(self, count: int) -> None:
        self.dropped.inc(count)

    def deregistered(self, reason: str) -> None:
        self.deregistrations.labels(reason).inc()

    def conference_started(self) -> None:
        self.conferences_started.inc()

    def store_write(self, seconds: float) -> None:
        self.store_latency.observe(seconds)


class HotPath(Collector):
    """Counters and the routing histogram of the per-message path, exported when scraped."""

    def __init__(self) -> None:
        self.sent = 0
        self.delivered = 0
        self.routing_counts = [0] * (len(_ROUTING_BUCKETS) + 1)  # the last is +Inf
        self.routing_sum = 0.0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "poolsim_im_messages_sent", "IM messages accepted by the IMMCU", value=self.sent
        )
        yield CounterMetricFamily(
            "poolsim_im_messages_delivered",
            "IM messages queued for a recipient endpoint",
            value=self.delivered,
        )
        counts = list(self.routing_counts)
        cumulative, buckets = 0, []
        for bound, n in zip((*(str(b) for b in _ROUTING_BUCKETS), "+Inf"), counts, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "poolsim_routing_latency_seconds",
            "Message accepted by the IMMCU until queued for every recipient",
            buckets=buckets,
            sum_value=self.routing_sum,
        )


class _EngineCollector(Collector):
    """Gauges computed from the engine's state when scraped."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        e = self._engine
        conversations = list(e.immcu.conversations.values())
        conferences = [c for c in conversations if c.is_conference]
        yield GaugeMetricFamily(
            "poolsim_endpoints_active",
            "Registered endpoints (active registered endpoints)",
            value=len(e.registrar),
        )
        yield GaugeMetricFamily(
            "poolsim_users_signed_in", "Users with at least one endpoint", value=e.users_signed_in
        )
        yield GaugeMetricFamily(
            "poolsim_users_provisioned", "Users in the directory", value=len(e.directory)
        )
        yield GaugeMetricFamily(
            "poolsim_conversations_active", "Open IM conversations", value=len(conversations)
        )
        yield GaugeMetricFamily(
            "poolsim_conferences_active", "Open IM conferences", value=len(conferences)
        )
        yield GaugeMetricFamily(
            "poolsim_conference_participants",
            "Participants in open IM conferences",
            value=sum(len(c.participants) for c in conferences),
        )
        yield GaugeMetricFamily(
            "poolsim_event_queue_depth",
            "Events waiting in endpoint queues, summed",
            value=sum(len(ep.queue) for ep in e.registrar),
        )
