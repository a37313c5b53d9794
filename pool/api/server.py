"""Build and run one front end's gRPC server over an engine.

``start_front_end`` returns a running ``FrontEndServer`` bound to the port it was given (0 for
any free one, as tests do); it serves FrontEnd, PoolAdmin, grpc.health.v1 and server reflection,
and runs the engine's timers on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer  # the asyncio servicer (health.aio)
from grpc_reflection.v1alpha import reflection

from pool._proto.poolsim.v1 import admin_pb2, admin_pb2_grpc, frontend_pb2, frontend_pb2_grpc
from pool.api.admin import PoolAdminServicer
from pool.api.decoding import add_services
from pool.api.frontend import FrontEndServicer
from pool.api.metrics import Metrics
from pool.engine import Engine
from pool.service import LocalService, PoolService

log = logging.getLogger("poolsim.server")

SERVICE_NAMES = (
    frontend_pb2.DESCRIPTOR.services_by_name["FrontEnd"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["PoolAdmin"].full_name,
)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # bulk provisioning; the domain checks each field
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
    ("grpc.so_reuseport", 0),
]
TICK_MAX = 0.5  # seconds between engine ticks at most (idle timers, expiry, flow control)


@dataclass(frozen=True, slots=True)
class TlsPem:
    """Server certificate and key as PEM bytes (what travels to an Enterprise front end, so the
    nodes of a cluster need no copy of the files); with ``client_ca``, mutual TLS."""

    cert: bytes
    key: bytes
    client_ca: bytes | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Server certificate and key; with ``client_ca``, clients must present a certificate."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def load(self) -> TlsPem:
        """The files' contents (OSError if one cannot be read)."""
        ca = self.client_ca.read_bytes() if self.client_ca else None
        return TlsPem(self.cert.read_bytes(), self.key.read_bytes(), ca)

    def credentials(self) -> grpc.ServerCredentials:
        return self.load().credentials()


class FrontEndServer:
    """A running front end: its gRPC server, health service and timer task."""

    def __init__(
        self,
        engine: Engine,
        server: grpc.aio.Server,
        port: int,
        health_servicer: HealthServicer,
    ) -> None:
        self.engine = engine
        self.server = server
        self.port = port
        self.health = health_servicer
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def _tick_loop(self) -> None:
        """The engine's timers; how late each wake-up is (the loop's lag) goes to its throttle."""
        engine = self.engine
        loop = asyncio.get_running_loop()
        while True:
            try:
                deadline = engine.tick()
            except Exception:  # a bug in a timer must not stop every other timer
                log.exception("engine timer failed")
                deadline = None
            delay = TICK_MAX if deadline is None else deadline - engine.clock.monotonic()
            delay = min(max(delay, 0.001), TICK_MAX)
            due = loop.time() + delay
            await asyncio.sleep(delay)
            engine.throttle.lagged(loop.time() - due)

    async def set_serving(self, serving: bool) -> None:
        """What the health service answers for the server and each of its services."""
        status = health_pb2.HealthCheckResponse.SERVING
        if not serving:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, sign every endpoint out (ending their streams), then stop."""
        await self.health.enter_graceful_shutdown()
        self.engine.shutdown()
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        await self.server.stop(grace)

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def start_front_end(
    engine: Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    admin_token: str,
    metrics: Metrics | None = None,
    tls: TlsFiles | TlsPem | None = None,
    service: PoolService | None = None,
    serving: bool = True,
) -> FrontEndServer:
    """``service`` answers the RPCs (Enterprise's front end); by default the engine alone.
    ``serving=False``: health says NOT_SERVING until ``FrontEndServer.set_serving(True)``
    (an Enterprise front end, until its pool serves)."""
    service = service or LocalService(engine)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    add_services(
        server,
        (
            (frontend_pb2_grpc.add_FrontEndServicer_to_server, FrontEndServicer(service, metrics)),
            (
                admin_pb2_grpc.add_PoolAdminServicer_to_server,
                PoolAdminServicer(service, admin_token, metrics),
            ),
        ),
    )
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    busy = f"cannot listen on {target}: the port is taken or the address is not local"
    try:
        bound = (
            server.add_secure_port(target, tls.credentials())
            if tls is not None
            else server.add_insecure_port(target)
        )
    except RuntimeError as exc:  # grpcio raises this for a port it cannot bind
        raise OSError(f"{busy} (choose another --port; 0 takes any free port)") from exc
    if bound == 0:
        raise OSError(busy)
    await server.start()
    engine.address = f"{host}:{bound}" if ":" not in host else f"[{host}]:{bound}"
    front_end = FrontEndServer(engine, server, bound, health_servicer)
    await front_end.set_serving(serving)
    return front_end
