"""``FrontEnd.Session`` on the wire: batches of calls with ids, replies with the unary call's
status, the endpoint's events, and how the stream ends (a real grpc.aio server on loopback,
the fake clock)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from pool import errors
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.client import PoolClient
from pool.client.stream import CallStream, Unanswered
from tests.conftest import PASSWORD, StandardPool, eventually, start_standard, uri
from tests.test_backpressure import endpoint, flood, step
from tests.test_backpressure import pool as pool  # the fixture: a small event queue

WAIT = 10.0


def _md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _until_reply(call: Any, ids: set[int]) -> dict[int, pb.SessionReply]:
    """Read the stream until every call in ``ids`` has its reply."""
    got: dict[int, pb.SessionReply] = {}
    async with asyncio.timeout(WAIT):
        while not ids <= got.keys():
            response = await call.read()
            assert response is not grpc.aio.EOF, f"the stream ended; replies so far {got}"
            got.update({r.id: r for r in response.replies})
    return got


async def test_one_message_carries_many_calls_and_their_replies_keep_their_ids(
    pool: StandardPool,
) -> None:
    alice, bob = await pool.sign_in(0), await pool.sign_in(1)
    conv = await alice.create_conversation([uri(1)])
    await bob.accept(conv.conversation_id)
    stub = pb_grpc.FrontEndStub(pool.client.channel())
    call = stub.Session(metadata=_md(alice.token))
    cid = conv.conversation_id
    calls = [
        pb.SessionCall(
            id=10 + i, send_message=pb.SendMessageRequest(conversation_id=cid, body=f"m{i}")
        )
        for i in range(5)
    ]
    calls.append(
        pb.SessionCall(id=99, send_message=pb.SendMessageRequest(conversation_id="c-x", body="x"))
    )
    calls.append(pb.SessionCall(id=100, publish_presence=pb.PublishPresenceRequest(availability=7)))
    calls.append(pb.SessionCall(id=101))  # no request at all
    await call.write(pb.SessionRequest(calls=calls))
    replies = await _until_reply(call, {10, 11, 12, 13, 14, 99, 100, 101})
    assert [replies[10 + i].send_message.sequence for i in range(5)] == [1, 2, 3, 4, 5]
    assert replies[99].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "unknown conversation" in replies[99].error.message
    assert replies[99].WhichOneof("response") is None
    assert replies[100].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert replies[101].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # the same per-method series as unary calls, and the session's own
    sends = {"method": "SendMessage", "code": "OK"}
    assert pool.metric("poolsim_rpc_duration_seconds_count", sends) == 5
    assert pool.metric("poolsim_session_calls_total", {"method": "SendMessage"}) == 6
    assert pool.metric("poolsim_session_streams_open") == 1
    labels = {"grpc_type": "bidi_stream", "grpc_service": "poolsim.v1.FrontEnd"}
    session = {**labels, "grpc_method": "Session"}
    assert pool.metric("grpc_server_started_total", session) == 1
    # one SessionRequest read, as go-grpc-prometheus counts a stream's messages
    assert pool.metric("grpc_server_msg_received_total", session) == 1
    await call.write(pb.SessionRequest(calls=[pb.SessionCall(id=200)]))
    await _until_reply(call, {200})
    assert pool.metric("grpc_server_msg_received_total", session) == 2
    call.cancel()


async def test_a_call_error_carries_the_rich_details_as_a_google_rpc_status() -> None:
    from pool.api.session import error_bytes
    from pool.api.status import rich_details
    from pool.errors import Redirect

    redirect = Redirect("sip:a@contoso.com", "127.0.0.1:5062", "fe2")
    code = grpc.StatusCode.FAILED_PRECONDITION
    details = rich_details(redirect, code)
    assert details is not None
    data = error_bytes(7, code, redirect.message, (*redirect.metadata.items(), details))
    reply = pb.SessionResponse.FromString(data).replies[0]
    assert reply.id == 7
    status = status_pb2.Status.FromString(reply.error.SerializeToString())  # same numbers
    assert status.code == code.value[0]
    assert status.details[0].TypeName() == "google.rpc.ErrorInfo"
    assert reply.error.metadata["poolsim-home-address"] == "127.0.0.1:5062"


async def test_events_come_on_the_session_which_replaces_the_events_stream(
    pool: StandardPool,
) -> None:
    alice, bob = await pool.sign_in(0), await pool.sign_in(1)
    stub = pb_grpc.FrontEndStub(pool.client.channel())
    old = stub.Events(pb.EventsRequest(), metadata=_md(bob.token))
    bob_ep = endpoint(pool, bob.endpoint_id)
    await eventually(lambda: bob_ep.streams == 1, what="the Events stream is open")
    session = stub.Session(metadata=_md(bob.token))
    async with asyncio.timeout(WAIT):
        assert await old.read() is grpc.aio.EOF  # replaced: it ends
    await alice.create_conversation([uri(1)], first_message="hello")
    async with asyncio.timeout(WAIT):
        response = await session.read()
    assert response.events[0].invitation.first_message.body == "hello"
    session.cancel()


async def test_the_client_transport_session_reads_events_and_answers_calls(
    pool: StandardPool,
) -> None:
    client = PoolClient(pool.address, transport="session")
    try:
        alice = await pool.sign_in(0)
        bob = await client.sign_in(uri(1), PASSWORD, "desktop")
        assert bob.stream is not None
        conv = await alice.create_conversation([uri(1)], first_message="hello")
        async with asyncio.timeout(WAIT):
            async for event in bob.events():
                assert event.invitation.first_message.body == "hello"
                break
        joined, presence = await asyncio.gather(
            bob.accept(conv.conversation_id), bob.get_presence([uri(0)])
        )
        assert uri(0) in joined.participants
        assert presence[0].user_uri == uri(0)
        # the raw call by method name answers the response message, over either transport
        request = pb.GetPresenceRequest(user_uris=[uri(1)])
        for who in (bob, alice):
            raw = await who.call("GetPresence", request)
            assert isinstance(raw, pb.GetPresenceResponse)
            assert raw.presences[0].user_uri == uri(1)
    finally:
        await client.close()


async def test_the_stream_ends_ok_after_the_endpoints_own_sign_out(pool: StandardPool) -> None:
    alice = await pool.sign_in(0)
    call = pb_grpc.FrontEndStub(pool.client.channel()).Session(metadata=_md(alice.token))
    await call.write(pb.SessionRequest(calls=[pb.SessionCall(id=1, sign_out=pb.SignOutRequest())]))
    kinds: list[str | None] = []
    async with asyncio.timeout(WAIT):
        async for response in call:
            kinds.extend(e.WhichOneof("kind") for e in response.events)
    assert kinds == ["signed_out"]
    assert await call.code() == grpc.StatusCode.OK


async def test_a_dead_token_cannot_open_a_session(pool: StandardPool) -> None:
    alice = await pool.sign_in(0)
    await alice.sign_out()
    call = pb_grpc.FrontEndStub(pool.client.channel()).Session(metadata=_md(alice.token))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_stream_ends_unavailable_when_the_front_end_stops(tmp_path: Path) -> None:
    p = await start_standard(tmp_path)
    try:
        alice = await p.sign_in(0)
        call = pb_grpc.FrontEndStub(p.client.channel()).Session(metadata=_md(alice.token))
        ep = endpoint(p, alice.endpoint_id)
        await eventually(lambda: ep.streams == 1, what="the session is open")
        stopping = asyncio.get_running_loop().create_task(p.server.stop(grace=5.0))
        kinds: list[str | None] = []

        async def read_all() -> None:
            async with asyncio.timeout(WAIT):
                async for response in call:
                    kinds.extend(e.WhichOneof("kind") for e in response.events)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await read_all()
        assert kinds == ["signed_out"]
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        await stopping
    finally:
        await p.client.close()
        p.engine.store.close()


async def test_a_session_that_stops_reading_is_flow_controlled(pool: StandardPool) -> None:
    alice = await pool.sign_in(0)
    bob = await pool.sign_in(1)
    bob_ep = endpoint(pool, bob.endpoint_id)
    channel = grpc.aio.insecure_channel(
        pool.address,
        options=[("grpc.use_local_subchannel_pool", 1), ("grpc.http2.bdp_probe", 0)],
    )
    try:
        call = pb_grpc.FrontEndStub(channel).Session(metadata=_md(bob.token))
        await eventually(lambda: bob_ep.streams == 1, what="bob's session is open")
        await flood(pool, alice, bob)
        await step(pool, 61)
        assert bob_ep.signed_out
        await eventually(lambda: bob_ep.streams == 0, what="the server ended bob's session")
        code = None
        async with asyncio.timeout(WAIT):
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await channel.close(None)


async def test_after_its_own_sign_out_a_session_writes_nothing_more_to_its_stream(
    pool: StandardPool,
) -> None:
    """The server ends the stream after SignOut; a call written to it then would make grpc's
    client lose the server's status ("Internal error from Core"): the call goes on a new stream
    and gets what a unary call gets."""
    client = PoolClient(pool.address, transport="session")
    try:
        alice = await client.sign_in(uri(0), PASSWORD, "desktop")
        first = alice.stream
        assert first is not None
        await alice.sign_out()
        assert first.spent
        for _ in range(5):
            with pytest.raises(errors.Unauthenticated):
                await alice.list_contacts()
            assert alice.stream is not first
    finally:
        await client.close()


class _EndedByCore:
    """A Session call whose write failed after the server ended it: grpc reports INTERNAL."""

    code, details = grpc.StatusCode.INTERNAL, "Internal error from Core"

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.release = asyncio.Event()

    async def write(self, data: bytes) -> None:
        self.written.append(data)
        self.release.set()

    def __aiter__(self) -> _EndedByCore:
        return self

    async def __anext__(self) -> pb.SessionResponse:
        await self.release.wait()
        raise grpc.aio.AioRpcError(
            self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=self.details
        )

    def cancel(self) -> None:
        pass


class _FrontEndDown(_EndedByCore):
    """A Session call whose front end went down once the call was written."""

    code, details = grpc.StatusCode.UNAVAILABLE, "the front end went down"


class _Channel:
    def __init__(self, call: _EndedByCore) -> None:
        self.call = call

    def stream_stream(self, *_: Any, **__: Any) -> Any:
        return lambda metadata: self.call


async def test_a_status_lost_by_grpc_core_leaves_the_waiting_calls_unanswered_not_failed() -> None:
    call = _EndedByCore()
    stream = CallStream(_Channel(call), ())  # type: ignore[arg-type]
    with pytest.raises(Unanswered):
        await asyncio.wait_for(stream.call("ListContacts", pb.ListContactsRequest()), WAIT)
    assert call.written  # it was sent
    assert stream.done
    assert stream.spent
    assert stream.ended is None


async def test_a_call_with_an_error_handler_gives_it_the_error_instead_of_the_future() -> None:
    stream = CallStream(_Channel(_EndedByCore()), ())  # type: ignore[arg-type]
    handled: list[tuple[asyncio.Future[Any], str, Any, Exception]] = []

    def handler(f: asyncio.Future[Any], method: str, request: Any, e: Exception) -> None:
        handled.append((f, method, request, e))

    asked = pb.SendMessageRequest(conversation_id="c-1", body="x" * 300)  # 2-byte tag, length
    future = stream.call("SendMessage", asked, handler)
    await eventually(lambda: bool(handled), what="the handler was called")
    assert handled[0][0] is future
    # the call it failed, read back from what was written: method and request, equal
    assert handled[0][1] == "SendMessage"
    assert handled[0][2] == asked
    assert handled[0][2] is not asked
    assert isinstance(handled[0][3], Unanswered)
    assert not future.done()  # the handler's to settle
    late = stream.call("ListContacts", pb.ListContactsRequest(), handler)
    assert handled[1][0] is late
    assert handled[1][1:3] == ("ListContacts", pb.ListContactsRequest())
    assert isinstance(handled[1][3], Unanswered)


async def test_start_answers_as_call_does_over_either_transport(pool: StandardPool) -> None:
    """``Session.start``: the same reply and errors as ``call``, a future begun at once."""
    bob = await pool.sign_in(1)
    for transport in ("session", "unary"):
        client = PoolClient(pool.address, transport=transport)
        try:
            alice = await client.sign_in(uri(0), PASSWORD, "desktop")
            conv = await alice.create_conversation([uri(1)])
            await bob.accept(conv.conversation_id)
            request = pb.SendMessageRequest(conversation_id=conv.conversation_id, body="hi")
            replies = await asyncio.gather(*(alice.start("SendMessage", request) for _ in range(3)))
            assert all(isinstance(r, pb.SendMessageResponse) for r in replies)
            assert sorted(r.sequence for r in replies) == [1, 2, 3]  # type: ignore[attr-defined]
            unknown = pb.SendMessageRequest(conversation_id="c-nope", body="x")
            with pytest.raises(errors.NotFound) as by_call:
                await alice.call("SendMessage", unknown)
            with pytest.raises(errors.NotFound) as by_start:
                await alice.start("SendMessage", unknown)
            assert str(by_start.value) == str(by_call.value)
            await alice.sign_out()
            with pytest.raises(errors.Unauthenticated):
                await alice.start("ListContacts", pb.ListContactsRequest())
        finally:
            await client.close()


async def test_a_started_call_left_unanswered_goes_again_on_a_new_stream(
    pool: StandardPool,
) -> None:
    client = PoolClient(pool.address, transport="session")
    try:
        alice = await client.sign_in(uri(0), PASSWORD, "desktop")
        real = alice.stream
        assert real is not None
        ended = _EndedByCore()  # this stream ends with its status lost: the call was not run
        alice.stream = CallStream(_Channel(ended), ())  # type: ignore[arg-type]
        real.close()
        reply = await asyncio.wait_for(alice.start("ListContacts", pb.ListContactsRequest()), WAIT)
        assert isinstance(reply, pb.ListContactsResponse)
        assert ended.written  # tried there first
        assert alice.stream is not None
        assert not alice.stream.spent
    finally:
        await client.close()


async def test_a_started_call_that_finds_its_front_end_down_signs_in_again_and_is_retried(
    pool: StandardPool,
) -> None:
    """After a reconnection too: the retry knows the endpoint it was started on is gone (a
    retry bound to the first sign-in would take the failure for one already recovered)."""
    client = PoolClient(pool.address, transport="session", reconnect=True)
    try:
        alice = await client.sign_in(uri(0), PASSWORD, "desktop")
        await alice.reconnect()
        assert alice.reconnections == 1
        real = alice.stream
        assert real is not None
        down = _FrontEndDown()
        alice.stream = CallStream(_Channel(down), ())  # type: ignore[arg-type]
        real.close()
        reply = await asyncio.wait_for(alice.start("ListContacts", pb.ListContactsRequest()), WAIT)
        assert isinstance(reply, pb.ListContactsResponse)
        assert down.written  # tried there first
        assert alice.reconnections == 2  # signed in again for it
        assert alice.stream is not None
        assert not alice.stream.spent
    finally:
        await client.close()
