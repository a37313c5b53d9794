"""The load driver's own Prometheus endpoint (``poolsim run --metrics-port``), so a dashboard
shows both sides of a run live: what the clients saw beside the pool's own metrics.

Names (fixed with the project's dashboard): ``poolsim_driver_operations_total{operation,
code}``, ``poolsim_driver_operation_seconds{operation}`` (client-side latency of OK calls,
from the intended start), ``poolsim_driver_late_starts_total{operation}``,
``poolsim_driver_skipped_total{operation}``, ``poolsim_driver_loop_lag_seconds`` and
``poolsim_driver_phase{phase}`` (1 for the current phase), plus prometheus_client's process
collector (``process_cpu_seconds_total``, ``process_resident_memory_bytes``). Labels come
from fixed sets (operation names, status codes, phases).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.process_collector import ProcessCollector

from bench.stats import Phase
from pool.api.metrics import LATENCY_BUCKETS  # the server's: 10 us to 10 s

LAG_BUCKETS = (1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class DriverMetrics:
    """The driver's metrics on an injected registry (a ``RecordListener`` of the Recorder)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)
        self.operations = Counter(
            "poolsim_driver_operations",
            "Operations the driver finished, by status code",
            ["operation", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "poolsim_driver_operation_seconds",
            "Client-side latency of OK operations, from their intended start",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.late_starts = Counter(
            "poolsim_driver_late_starts",
            "Operations started more than 50 ms after their intended time",
            ["operation"],
            registry=registry,
        )
        self.skips = Counter(
            "poolsim_driver_skipped",
            "Operations not started: every slot of the driver was taken",
            ["operation"],
            registry=registry,
        )
        self.loop_lag = Histogram(
            "poolsim_driver_loop_lag_seconds",
            "How late the driver's 10 ms event-loop timer fired",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.phase_gauge = Gauge(
            "poolsim_driver_phase", "1 for the run's current phase", ["phase"], registry=registry
        )
        for p in Phase:
            self.phase_gauge.labels(p.value).set(0)

    def recorded(self, name: str, latency_s: float, code: str) -> None:
        self.operations.labels(name, code).inc()
        if code == "OK":
            self.latency.labels(name).observe(latency_s)

    def late(self, name: str) -> None:
        self.late_starts.labels(name).inc()

    def skipped(self, name: str) -> None:
        self.skips.labels(name).inc()

    def lag(self, seconds: float) -> None:
        self.loop_lag.observe(seconds)

    def phase(self, phase: Phase) -> None:
        for p in Phase:
            self.phase_gauge.labels(p.value).set(1 if p is phase else 0)


class MetricsServer:
    """``DriverMetrics`` on their own registry, served on ``host:port`` (0: a free port)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.metrics = DriverMetrics(CollectorRegistry())
        self._server, self._thread = start_http_server(
            port, addr=host, registry=self.metrics.registry
        )
        self.port = int(self._server.server_port)
        self.host = host

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
