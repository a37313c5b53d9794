"""Prometheus metrics of one front end, named after the counters capacity planners watch.

Stress-tool and server counters (SPEC section 6) map as follows: active registered endpoints ->
``poolsim_endpoints_active``; logon attempts / failed logons -> ``poolsim_logon_attempts_total``
/ ``poolsim_logon_failures_total``; SetPresence / GetPresence -> ``poolsim_presence_publishes_
total`` / ``poolsim_presence_polls_total``; IM sessions attempted / established, IM messages
sent / received, conferences active and participants, and the server's queue and latency
figures as histograms. Labels come from small fixed sets only (RPC method names, status codes,
reasons): never a user.

Beside them, the standard gRPC server series under the names and labels of the Go and Python
gRPC Prometheus middlewares (go-grpc-prometheus, py-grpc-prometheus), so community gRPC
dashboards work unchanged: ``grpc_server_started_total``, ``grpc_server_handled_total`` (with
``grpc_code`` spelt as Go spells it: ``OK``, ``NotFound``, ``Unauthenticated``),
``grpc_server_handling_seconds``, ``grpc_server_msg_received_total`` and
``grpc_server_msg_sent_total``, labelled ``grpc_type``, ``grpc_service`` and ``grpc_method``.
``poolsim_rpc_duration_seconds{method,code}`` stays (load drivers read it). Latency buckets
run from 10 µs to 10 s. ``_created`` series are off: they doubled every counter.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from pool._proto.poolsim.v1 import admin_pb2, frontend_pb2
from pool.api.throttle_metrics import ThrottleCollector
from pool.observer import Observer

if TYPE_CHECKING:
    from pool.engine import Engine

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # no _created twins

# 10 µs (an in-memory call) to 10 s (the store's 12 s throttle is beyond it: +Inf)
LATENCY_BUCKETS = (
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
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


def serve_metrics(host: str, port: int, registry: CollectorRegistry) -> tuple[Any, int]:
    """Start the Prometheus endpoint: (server, port bound). A taken port is an OSError naming
    it, for one clear line instead of a socket traceback."""
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise OSError(
            f"cannot serve metrics on {where}: {exc.strerror or exc} (choose another "
            "--metrics-port; 0 takes any free port, -1 serves none)"
        ) from exc
    return server, int(server.server_port)


class Metrics(Observer):
    """Every metric of a front end, on an injected registry. Also the engine's Observer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        # process_cpu_seconds_total and memory: the front-end processor figure of SPEC 6
        ProcessCollector(registry=r)
        self.rpc = RpcMetrics()
        r.register(self.rpc)
        self.session = SessionMetrics()
        r.register(self.session)
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
            buckets=LATENCY_BUCKETS,
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
        self.registry.register(ThrottleCollector(engine))
        self.info.labels(engine.config.front_end_id, edition, engine.config.pool_name).set(1)

    def rpc_started(self, method: str) -> None:
        self.rpc.started(method)

    def rpc_stream_received(self, method: str, count: int) -> None:
        """Messages a client-streaming call read (the wrapper cannot see them)."""
        self.rpc.stream_received(method, count)

    def rpc_stream_sent(self, method: str, count: int) -> None:
        """Messages a stream written with ``context.write`` sent (the wrapper cannot see them)."""
        self.rpc.stream_sent(method, count)

    def rpc_done(self, method: str, code: str, seconds: float, sent: int | None = None) -> None:
        """One call's end: its status code (``grpc.StatusCode`` name), duration and, for a
        stream, the messages it sent (a unary call sends one when it succeeds)."""
        self.rpc.done(method, code, seconds, sent)

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

    def message_routed(self, recipients: int, seconds: float) -> None:
        hot = self.hot
        hot.sent += 1
        hot.delivered += recipients
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


class SessionMetrics(Collector):
    """``FrontEnd.Session`` streams: open streams, messages each way, calls and events carried
    (the calls are also in the per-method series, as unary calls are)."""

    def __init__(self) -> None:
        self.open = 0
        self.received_messages = 0
        self.received_calls = 0
        self.sent_messages = 0
        self.sent_replies = 0
        self.sent_events = 0
        self.calls: dict[str, int] = {}

    def opened(self) -> None:
        self.open += 1

    def closed(self) -> None:
        self.open -= 1

    def received(self, calls: int) -> None:
        self.received_messages += 1
        self.received_calls += calls

    def sent(self, replies: int, events: int) -> None:
        self.sent_messages += 1
        self.sent_replies += replies
        self.sent_events += events

    def call(self, method: str) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "poolsim_session_streams_open", "Session streams open", value=self.open
        )
        for name, text, value in (
            ("messages_received", "SessionRequest messages received", self.received_messages),
            ("calls_received", "Calls received in SessionRequest messages", self.received_calls),
            ("messages_sent", "SessionResponse messages sent", self.sent_messages),
            ("replies_sent", "Replies sent in SessionResponse messages", self.sent_replies),
            ("events_sent", "Events sent in SessionResponse messages", self.sent_events),
        ):
            yield CounterMetricFamily(f"poolsim_session_{name}", text, value=value)
        calls = CounterMetricFamily(
            "poolsim_session_calls", "Calls answered over Session streams", labels=["method"]
        )
        for method, n in list(self.calls.items()):
            calls.add_metric([method], n)
        yield calls


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


def _go_code(name: str) -> str:
    """A status code as Go's codes.Code.String() spells it (the ecosystem's ``grpc_code``)."""
    if name == "OK":
        return name
    if name == "CANCELLED":
        return "Canceled"
    return "".join(part.capitalize() for part in name.split("_"))


def _methods() -> dict[str, tuple[str, str]]:
    """RPC name -> (full service name, grpc_type), from the API's descriptors."""
    out: dict[str, tuple[str, str]] = {}
    for module, service in ((frontend_pb2, "FrontEnd"), (admin_pb2, "PoolAdmin")):
        d = module.DESCRIPTOR.services_by_name[service]
        for m in d.methods:
            kind = {
                (False, False): "unary",
                (False, True): "server_stream",
                (True, False): "client_stream",
                (True, True): "bidi_stream",
            }[(m.client_streaming, m.server_streaming)]
            out[m.name] = (d.full_name, kind)
    return out


class _Latency:
    """One (method, code)'s latency histogram as plain numbers (no lock on the hot path)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last is +Inf
        self.sum = 0.0


class _MethodStats:
    __slots__ = ("kind", "latency", "received", "sent", "service", "started")

    def __init__(self, service: str, kind: str) -> None:
        self.service = service
        self.kind = kind
        self.started = 0
        self.received = 0  # messages a client-streaming call read (others read one per call)
        self.sent = 0
        self.latency: dict[str, _Latency] = {}


class RpcMetrics(Collector):
    """Server-side RPC figures, kept as plain numbers by the event loop's thread and exported
    when scraped, as ``poolsim_rpc_duration_seconds{method,code}`` and as the standard gRPC
    server series. One observation feeds both: a Prometheus child takes a lock per call and
    costs as much as the call's own bookkeeping."""

    def __init__(self) -> None:
        self._known = _methods()
        self._stats: dict[str, _MethodStats] = {}

    def _of(self, method: str) -> _MethodStats:
        stats = self._stats.get(method)
        if stats is None:
            service, kind = self._known.get(method, ("unknown", "unary"))
            stats = self._stats[method] = _MethodStats(service, kind)
        return stats

    def started(self, method: str) -> None:
        self._of(method).started += 1

    def done(self, method: str, code: str, seconds: float, sent: int | None) -> None:
        stats = self._of(method)
        latency = stats.latency.get(code)
        if latency is None:
            latency = stats.latency[code] = _Latency()
        latency.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        latency.sum += seconds
        if sent is not None:
            stats.sent += sent
        elif code == "OK" and stats.kind == "unary":
            stats.sent += 1

    def stream_sent(self, method: str, count: int) -> None:
        self._of(method).sent += count

    def stream_received(self, method: str, count: int) -> None:
        self._of(method).received += count

    def collect(self) -> Iterator[Metric]:
        ident = ["grpc_type", "grpc_service", "grpc_method"]
        duration = HistogramMetricFamily(
            "poolsim_rpc_duration_seconds",
            "gRPC calls by method and status code, server side",
            labels=["method", "code"],
        )
        handling = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Response latency (seconds) of gRPC calls handled by the server",
            labels=ident,
        )
        started = CounterMetricFamily(
            "grpc_server_started", "RPCs started on the server", labels=ident
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status",
            labels=[*ident, "grpc_code"],
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received", "RPC messages received by the server", labels=ident
        )
        sent = CounterMetricFamily(
            "grpc_server_msg_sent", "RPC messages sent by the server", labels=ident
        )
        for method, stats in list(self._stats.items()):
            key = [stats.kind, stats.service, method]
            total = [0] * (len(LATENCY_BUCKETS) + 1)
            total_sum = 0.0
            for code, latency in list(stats.latency.items()):
                counts = list(latency.counts)
                duration.add_metric([method, code], _cumulative(counts), latency.sum)
                handled.add_metric([*key, _go_code(code)], sum(counts))
                total = [a + b for a, b in zip(total, counts, strict=True)]
                total_sum += latency.sum
            handling.add_metric(key, _cumulative(total), total_sum)
            started.add_metric(key, stats.started)
            streaming = stats.kind in ("client_stream", "bidi_stream")
            # a unary or server-streaming call reads one request; a client stream, many
            received.add_metric(key, stats.received if streaming else stats.started)
            sent.add_metric(key, stats.sent)
        yield from (duration, handling, started, handled, received, sent)


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    bounds = (*(str(b) for b in LATENCY_BUCKETS), "+Inf")
    out, running = [], 0
    for bound, n in zip(bounds, counts, strict=True):
        running += n
        out.append((bound, float(running)))
    return out
