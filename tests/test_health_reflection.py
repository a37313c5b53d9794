"""grpc.health.v1 and server reflection on a running front end."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import DEADLINE, StandardPool, start_standard

FRONT_END = "poolsim.v1.FrontEnd"
ADMIN = "poolsim.v1.PoolAdmin"
HEALTH = "grpc.health.v1.Health"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@contextlib.asynccontextmanager
async def _channel(address: str) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(address)
    try:
        yield channel
    finally:
        await channel.close(None)


@pytest.mark.parametrize("service", ["", FRONT_END, ADMIN])
async def test_health_check_is_serving(standard: StandardPool, service: str) -> None:
    async with _channel(standard.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=DEADLINE)
    assert reply.status == SERVING


async def test_health_check_of_unknown_service_is_not_found(standard: StandardPool) -> None:
    async with _channel(standard.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Check(
                health_pb2.HealthCheckRequest(service="poolsim.v1.NoSuchService"),
                timeout=DEADLINE,
            )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_stop_reports_not_serving_then_refuses(tmp_path: Path) -> None:
    pool = await start_standard(tmp_path)
    stopping: asyncio.Task[None] | None = None
    try:
        async with _channel(pool.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=FRONT_END))
            first = await asyncio.wait_for(watch.read(), DEADLINE)
            assert isinstance(first, health_pb2.HealthCheckResponse)
            assert first.status == SERVING
            # stop() first enters graceful shutdown: a watcher hears NOT_SERVING
            stopping = asyncio.get_running_loop().create_task(pool.server.stop(grace=DEADLINE))
            second = await asyncio.wait_for(watch.read(), DEADLINE)
            assert isinstance(second, health_pb2.HealthCheckResponse)
            assert second.status == NOT_SERVING
            watch.cancel()  # let the server's grace period end now
            await asyncio.wait_for(stopping, DEADLINE)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=DEADLINE)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        if stopping is None or not stopping.done():
            if stopping is not None:
                stopping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stopping
            await pool.server.stop(grace=0.5)
        await pool.client.close()
        pool.engine.store.close()


async def _list_services(address: str) -> list[str]:
    async with _channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=DEADLINE
        )
        replies = [reply async for reply in call]
    assert len(replies) == 1
    assert replies[0].WhichOneof("message_response") == "list_services_response"
    return [s.name for s in replies[0].list_services_response.service]


async def test_reflection_lists_every_service(standard: StandardPool) -> None:
    names = await _list_services(standard.address)
    for name in (FRONT_END, ADMIN, HEALTH):
        assert name in names, f"{name} not listed by reflection: {names}"
    assert len(names) == len(set(names))


async def test_reflection_describes_the_front_end(standard: StandardPool) -> None:
    async with _channel(standard.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=FRONT_END)]),
            timeout=DEADLINE,
        )
        replies = [reply async for reply in call]
    assert len(replies) == 1
    assert replies[0].WhichOneof("message_response") == "file_descriptor_response"
    assert replies[0].file_descriptor_response.file_descriptor_proto
