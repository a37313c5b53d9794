"""PoolClient follows a sign-in redirect to the user's home front end (Enterprise needs it):
a front end that is not the user's home answers FAILED_PRECONDITION with the home address in
the ``poolsim-home-address`` trailing metadata and in a ``google.rpc.ErrorInfo``."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from pool import errors
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api.decoding import add_services
from pool.api.rpc import Handler, unary
from pool.api.status import DETAILS_KEY, HOME_ADDRESS_KEY
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


class RichRedirector(pb_grpc.FrontEndServicer, Handler):
    """A front end that redirects the way poolsim's do: a domain Redirect through ``unary``."""

    def __init__(self, home: str, trailer: bool = True) -> None:
        self.home = home
        self.metrics = None
        self.monotonic = time.monotonic
        self.trailer = trailer

    @unary
    async def SignIn(self, request: pb.SignInRequest, context: Any) -> pb.SignInResponse:
        redirect = errors.Redirect(request.user_uri, self.home, "fe2")
        if not self.trailer:  # only the rich details: what a client in another language reads
            redirect.metadata.clear()
        raise redirect


async def _rich(home: str, trailer: bool = True) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    add_services(server, [(pb_grpc.add_FrontEndServicer_to_server, RichRedirector(home, trailer))])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def test_a_redirect_carries_an_error_info_and_the_trailer() -> None:
    server, port = await _rich("127.0.0.1:5999")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.FrontEndStub(channel).SignIn(pb.SignInRequest(user_uri=uri(0)))
        err = info.value
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        trailers = dict(err.trailing_metadata() or ())
        assert trailers[HOME_ADDRESS_KEY] == "127.0.0.1:5999"
        status = status_pb2.Status.FromString(trailers[DETAILS_KEY])
        assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        (detail,) = status.details
        details = error_details_pb2.ErrorInfo()
        assert detail.Unpack(details)
        assert (details.reason, details.domain) == ("USER_HOMED_ELSEWHERE", "poolsim.v1")
        assert dict(details.metadata) == {"homeAddress": "127.0.0.1:5999", "frontEndId": "fe2"}
    finally:
        await server.stop(0)


async def test_the_client_follows_the_error_info_alone(standard: StandardPool) -> None:
    server, port = await _rich(standard.address, trailer=False)
    try:
        async with PoolClient(f"127.0.0.1:{port}") as client:
            session = await client.sign_in(uri(0), PASSWORD)
            assert session.address == standard.address
    finally:
        await server.stop(0)
