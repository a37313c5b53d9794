"""TLS and mutual TLS on a front end, with certificates made by the openssl CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest

from pool import errors
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api.server import FrontEndServer, TlsFiles, start_front_end
from pool.client import PoolClient, TransportError
from pool.clock import FakeClock
from pool.config import EngineConfig
from pool.engine import Engine
from pool.sqlite_store import SqliteStore
from tests.conftest import ADMIN_TOKEN, DEADLINE, DOMAIN, PASSWORD, uri
from tests.pki import Pki, needs_openssl
from tests.pki import channel_credentials as _credentials

pytestmark = needs_openssl

StartTls = Callable[[TlsFiles], Coroutine[Any, Any, str]]


@pytest.fixture
async def start_tls(tmp_path: Path) -> AsyncIterator[StartTls]:
    """Start a front end with the given TLS files; returns its address. Stops it at the end."""
    running: list[tuple[Engine, FrontEndServer]] = []

    async def start(tls: TlsFiles) -> str:
        store = SqliteStore(tmp_path / f"pool{len(running)}.db")
        engine = Engine(EngineConfig(password_iterations=1), store, FakeClock())
        engine.load()
        engine.provision("user", DOMAIN, 3, 0, PASSWORD)
        server = await start_front_end(
            engine, host="127.0.0.1", port=0, admin_token=ADMIN_TOKEN, tls=tls
        )
        running.append((engine, server))
        return f"127.0.0.1:{server.port}"

    try:
        yield start
    finally:
        for engine, server in running:
            await server.stop(grace=0.5)
            engine.store.close()


async def _sign_in_and_poll(client: PoolClient) -> None:
    alice = await client.sign_in(uri(0), PASSWORD, deadline=DEADLINE)
    seen = await alice.get_presence([uri(0), uri(1)])
    assert [p.availability for p in seen] == [3500, 18500]


async def _refused(client: PoolClient) -> grpc.StatusCode:
    """The code of a sign-in the transport refuses (it never reaches the pool)."""
    with pytest.raises((errors.Unavailable, TransportError)) as info:
        await client.sign_in(uri(0), PASSWORD, deadline=DEADLINE)
    cause = info.value.__cause__
    assert isinstance(cause, grpc.aio.AioRpcError)
    return cause.code()


async def test_tls_client_signs_in_and_polls(pki: Pki, start_tls: StartTls) -> None:
    address = await start_tls(TlsFiles(pki.server_cert, pki.server_key))
    async with PoolClient(address, credentials=_credentials(pki.ca)) as client:
        await _sign_in_and_poll(client)


async def test_tls_server_name_localhost(pki: Pki, start_tls: StartTls) -> None:
    address = await start_tls(TlsFiles(pki.server_cert, pki.server_key))
    options = [("grpc.ssl_target_name_override", "localhost")]
    async with PoolClient(address, credentials=_credentials(pki.ca), options=options) as client:
        await _sign_in_and_poll(client)


async def test_plaintext_client_cannot_call_a_tls_server(pki: Pki, start_tls: StartTls) -> None:
    address = await start_tls(TlsFiles(pki.server_cert, pki.server_key))
    async with PoolClient(address) as client:
        assert await _refused(client) == grpc.StatusCode.UNAVAILABLE


async def test_client_rejects_a_server_its_ca_did_not_sign(pki: Pki, start_tls: StartTls) -> None:
    address = await start_tls(TlsFiles(pki.server_cert, pki.server_key))
    async with PoolClient(address, credentials=_credentials(pki.rogue_ca)) as client:
        assert await _refused(client) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate(pki: Pki, start_tls: StartTls) -> None:
    address = await start_tls(TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca))
    async with PoolClient(address, credentials=_credentials(pki.ca)) as client:
        assert await _refused(client) == grpc.StatusCode.UNAVAILABLE
    async with PoolClient(address) as client:
        assert await _refused(client) == grpc.StatusCode.UNAVAILABLE
    # a raw call without a client certificate does not reach the service either
    channel = grpc.aio.secure_channel(address, _credentials(pki.ca))
    try:
        stub = pb_grpc.FrontEndStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetPresence(pb.GetPresenceRequest(user_uris=[uri(0)]), timeout=DEADLINE)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close(None)


async def test_mutual_tls_rejects_a_certificate_of_another_ca(
    pki: Pki, start_tls: StartTls
) -> None:
    address = await start_tls(TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca))
    credentials = _credentials(pki.ca, pki.rogue_cert, pki.rogue_key)
    async with PoolClient(address, credentials=credentials) as client:
        assert await _refused(client) == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_client_with_certificate_signs_in(pki: Pki, start_tls: StartTls) -> None:
    address = await start_tls(TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca))
    credentials = _credentials(pki.ca, pki.client_cert, pki.client_key)
    async with PoolClient(address, credentials=credentials) as client:
        await _sign_in_and_poll(client)
