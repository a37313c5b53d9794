"""What a client sends cannot hurt the pool: a request the API does not take is refused with
INVALID_ARGUMENT before anything is applied, and leaves no trace a later read trips on."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool

from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import admin_pb2_grpc as apb_grpc
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api.server import SERVICE_NAMES
from pool.privacy import AccessLevel
from tests.conftest import uri
from tests.contract.helpers import inbox

INT64_MAX = 2**63 - 1


def _md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _methods() -> list[tuple[str, str, bool, bool]]:
    """(service, method, server streaming, field 1 is a string) of every RPC of both services
    that takes one request (the Session stream is checked on its own)."""
    pool = descriptor_pool.Default()
    out = []
    for service in SERVICE_NAMES:
        for m in pool.FindServiceByName(service).methods:
            first = m.input_type.fields_by_number.get(1)
            is_string = first is not None and first.type == first.TYPE_STRING
            if not m.client_streaming:
                out.append((service, m.name, m.server_streaming, is_string))
    return out


async def _raw_bytes(
    channel: grpc.aio.Channel, service: str, method: str, streaming: bool, body: bytes
) -> grpc.aio.AioRpcError:
    path = f"/{service}/{method}"
    try:
        if streaming:
            async for _ in channel.unary_stream(path)(body, timeout=10):
                pass
        else:
            await channel.unary_unary(path)(body, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError(f"{path} took {body.hex()}")


@pytest.mark.one_transport
async def test_an_undecodable_body_is_invalid_argument_before_auth(pool: Any) -> None:
    """On every RPC of both services (one pool for all: a pool per RPC costs minutes)."""
    channel = pool.client.channel()
    for service, method, streaming, string_first in _methods():
        bodies = [bytes.fromhex("0a7f41")]  # field 1 says 127 bytes follow; one does
        if string_first:
            bodies.append(bytes.fromhex("0a02fffe"))  # field 1: a string that is not UTF-8
        for body in bodies:
            err = await _raw_bytes(channel, service, method, streaming, body)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, body, err)
            assert "could not be parsed as poolsim.v1." in (err.details() or ""), method


@pytest.mark.one_transport
async def test_an_undecodable_session_message_ends_the_stream_with_invalid_argument(
    pool: Any,
) -> None:
    """A Session stream authenticates when it opens (its token is metadata, as for unary
    calls); a message on it that cannot be parsed ends it with INVALID_ARGUMENT."""
    alice = await pool.sign_in(0)
    call = pool.client.channel(alice.address).stream_stream("/poolsim.v1.FrontEnd/Session")(
        metadata=_md(alice.token), timeout=10
    )
    await call.write(bytes.fromhex("0a7f41"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "could not be parsed as poolsim.v1.SessionRequest" in (caught.value.details() or "")
    assert await alice.get_presence([uri(0)])  # the endpoint still works


async def test_a_calendar_end_past_the_timestamp_range_is_refused_and_leaves_no_trace(
    pool: Any,
) -> None:
    alice = await pool.sign_in(0)
    bob = await pool.sign_in(1)
    await alice.add_contact(uri(1), AccessLevel.WORKGROUP)
    stub = pb_grpc.FrontEndStub(pool.client.channel(alice.address))
    async with inbox(bob) as box:
        await bob.subscribe([uri(0)])
        for until in (
            {"seconds": INT64_MAX, "nanos": 999_999_999},  # the repro
            {"seconds": 253_402_300_799, "nanos": 999_999_999},  # 9999-12-31: past the horizon
            {"seconds": 1, "nanos": -1},
        ):
            request = pb.PublishPresenceRequest(
                source=pb.PRESENCE_SOURCE_CALENDAR, availability=6500, until=until
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.PublishPresence(request, metadata=_md(alice.token))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "until" in (info.value.details() or "")
        # nothing was applied: the user and their Workgroup watcher still read presence
        (seen,) = await bob.get_presence([uri(0)])
        assert (seen.availability, seen.calendar_until) == (3500, 0.0)
        (own,) = await alice.get_presence([uri(0)])
        assert own.availability == 3500
        await alice.publish_presence(6500)  # and the watcher's stream is alive to see it
        while True:
            event = await box.next("presence")
            if event.presence.presence.availability == 6500:
                break


async def test_control_characters_and_trailing_newlines_are_refused(pool: Any) -> None:
    alice = await pool.sign_in(0)
    stub = pb_grpc.FrontEndStub(pool.client.channel(alice.address))
    for request in (
        pb.AddContactRequest(contact_uri=uri(1), group="Team\x00"),
        pb.AddContactRequest(contact_uri=uri(1) + "\n"),
        pb.PublishPresenceRequest(availability=3500, note="out\x1b[2J"),
        pb.CreateConversationRequest(invitees=[uri(1)], subject="hi\x07"),
    ):
        method = type(request).__name__.removesuffix("Request")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await getattr(stub, method)(request, metadata=_md(alice.token))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    assert await alice.list_contacts() == []
    admin = apb_grpc.PoolAdminStub(pool.client.channel(alice.address))
    md = _md(pool.admin_token)
    for request in (
        apb.ProvisionUsersRequest(prefix="x", domain="contoso.com\n", count=1, password="p"),
        apb.ProvisionUsersRequest(prefix="x\n", domain="contoso.com", count=1, password="p"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await admin.ProvisionUsers(request, metadata=md)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a note keeps its line breaks
    presence = await alice.publish_presence(3500, note="line one\nline two\tand a tab")
    assert presence.note == "line one\nline two\tand a tab"


async def test_unknown_enum_numbers_are_refused(pool: Any) -> None:
    alice = await pool.sign_in(0)
    stub = pb_grpc.FrontEndStub(pool.client.channel(alice.address))
    for request in (
        pb.PublishPresenceRequest(source=99, availability=3500),  # type: ignore[arg-type]
        pb.PublishPresenceRequest(availability=3500, machine_state=7),  # type: ignore[arg-type]
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.PublishPresence(request, metadata=_md(alice.token))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a value of" in (info.value.details() or "")


async def test_conversation_ids_that_are_not_ours_are_not_found(pool: Any) -> None:
    alice = await pool.sign_in(0)
    stub = pb_grpc.FrontEndStub(pool.client.channel(alice.address))
    for cid in ("c-g\u00b2-x", "c-g\u0663-x", "c-g99999999999999999999-x", "c--g1-", "x" * 300):
        for request in (
            pb.SendMessageRequest(conversation_id=cid, body="hi"),
            pb.LeaveRequest(conversation_id=cid),
            pb.AcceptInvitationRequest(conversation_id=cid),
            pb.InviteRequest(conversation_id=cid, user_uri=uri(1)),
        ):
            method = type(request).__name__.removesuffix("Request").removesuffix("Invitation")
            method = "AcceptInvitation" if method == "Accept" else method
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await getattr(stub, method)(request, metadata=_md(alice.token))
            code = info.value.code()
            assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (cid, info)
