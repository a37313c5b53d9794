"""PoolClient follows a sign-in redirect to the user's home front end (Enterprise needs it):
a front end that is not the user's home answers FAILED_PRECONDITION with the home address in
the ``poolsim-home-address`` trailing metadata."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from pool import errors
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api.status import HOME_ADDRESS_KEY
from pool.client import PoolClient
from tests.conftest import PASSWORD, StandardPool, uri


class Redirector(pb_grpc.FrontEndServicer):
    """A front end that is nobody's home."""

    def __init__(self, home: str) -> None:
        self.home = home
        self.calls = 0

    async def SignIn(self, request: pb.SignInRequest, context: Any) -> pb.SignInResponse:
        self.calls += 1
        context.set_trailing_metadata(
            ((HOME_ADDRESS_KEY, self.home), ("poolsim-front-end", "fe-9"))
        )
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"homed on fe-9 at {self.home}")
        raise AssertionError("unreachable")


async def _redirector(home: str) -> tuple[grpc.aio.Server, int, Redirector]:
    server = grpc.aio.server()
    servicer = Redirector(home)
    pb_grpc.add_FrontEndServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port, servicer


async def test_sign_in_follows_the_redirect_home(standard: StandardPool) -> None:
    server, port, servicer = await _redirector(standard.address)
    try:
        async with PoolClient(f"127.0.0.1:{port}") as client:
            session = await client.sign_in(uri(0), PASSWORD)
            assert servicer.calls == 1
            assert session.address == standard.address
            presence = await session.get_presence([uri(0)])
            assert presence[0].availability == 3500
    finally:
        await server.stop(0)


async def test_a_redirect_loop_is_an_error() -> None:
    a, port_a, servicer_a = await _redirector("")
    b, port_b, servicer_b = await _redirector(f"127.0.0.1:{port_a}")
    servicer_a.home = f"127.0.0.1:{port_b}"
    try:
        async with PoolClient(f"127.0.0.1:{port_a}") as client:
            with pytest.raises(errors.PoolError, match="redirected more than"):
                await client.sign_in(uri(0), PASSWORD)
    finally:
        await a.stop(0)
        await b.stop(0)
    assert servicer_a.calls + servicer_b.calls == 4  # MAX_REDIRECTS + 1 attempts
