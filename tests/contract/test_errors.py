"""Every client mistake gets its status code and a message that says what was wrong."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from pool import errors
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.privacy import AccessLevel
from tests.conftest import PASSWORD, uri

_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class Refusal:
    """What a refused call answered: its status code and message."""

    code: grpc.StatusCode
    details: str


#: what grpc's client reports when its write raced the server's end of the stream: the
#: server's own status is lost (``pool.client.stream``)
CORE_LOST = (grpc.StatusCode.INTERNAL, "Internal error from Core")


async def _raw(pool: Any, method: str, request: Any, token: str | None) -> Refusal:
    """``request`` as ``method``'s unary call, or (transport "session") as one call on a
    Session stream, whose reply carries the status the unary call answers with.

    A stream the server refuses at once (no token, a forged one) ends while the call is
    being written; when that write loses the server's status (a race inside grpc's client,
    seen once in CI on an Enterprise pool), the call is made again, as ``PoolClient`` does."""
    for _ in range(10):
        refusal = await _raw_once(pool, method, request, token)
        if (refusal.code, refusal.details) != CORE_LOST:
            return refusal
    return refusal


async def _raw_once(pool: Any, method: str, request: Any, token: str | None) -> Refusal:
    stub = pb_grpc.FrontEndStub(pool.client.channel())
    md = (("authorization", f"Bearer {token}"),) if token is not None else ()
    try:
        if pool.client.transport == "unary":
            await getattr(stub, method)(request, metadata=md)
            raise AssertionError(f"{method} took {request}")
        call = stub.Session(metadata=md)  # type: ignore[call-arg]  # written to
        field = pb.SessionCall.DESCRIPTOR.oneofs_by_name["request"]
        name = next(f.name for f in field.fields if f.message_type.name == f"{method}Request")
        await call.write(pb.SessionRequest(calls=[pb.SessionCall(id=1, **{name: request})]))
        async with asyncio.timeout(20):
            reply = (await call.read()).replies[0]
        call.cancel()
        assert reply.id == 1
        assert reply.HasField("error"), f"{method} took {request}"
        return Refusal(_CODES[reply.error.code], reply.error.message)
    except grpc.aio.AioRpcError as exc:
        return Refusal(exc.code(), exc.details() or "")


@pytest.mark.parametrize(
    ("request_", "code", "words"),
    [
        (pb.GetPresenceRequest(user_uris=["alice"]), "INVALID_ARGUMENT", "not a SIP URI"),
        (pb.GetPresenceRequest(), "INVALID_ARGUMENT", "user_uris is empty"),
        (pb.GetPresenceRequest(user_uris=["sip:nobody@contoso.com"]), "NOT_FOUND", "unknown user"),
        (pb.PublishPresenceRequest(availability=4000), "INVALID_ARGUMENT", "availability 4000"),
        (pb.PublishPresenceRequest(availability=3500, note="x" * 5000), "INVALID_ARGUMENT", "note"),
        (pb.CreateConversationRequest(), "INVALID_ARGUMENT", "invitees is empty"),
        (pb.SendMessageRequest(conversation_id="c-404", body="x"), "NOT_FOUND", "c-404"),
        (
            pb.AddContactRequest(contact_uri=uri(1), access_level=7),
            "INVALID_ARGUMENT",
            "access_level",
        ),
        (pb.RemoveContactRequest(contact_uri=uri(1)), "NOT_FOUND", "not a contact"),
    ],
)
async def test_bad_requests(pool: Any, request_: Any, code: str, words: str) -> None:
    alice = await pool.sign_in(0)
    method = type(request_).__name__.removesuffix("Request")
    err = await _raw(pool, method, request_, alice.token)
    assert err.code.name == code
    assert words in err.details


async def test_message_limits(pool: Any) -> None:
    alice = await pool.sign_in(0)
    await pool.sign_in(1)
    conv = await alice.create_conversation([uri(1)])
    with pytest.raises(errors.InvalidArgument, match="8000"):
        await alice.send_message(conv.conversation_id, "x" * 8001)
    with pytest.raises(errors.InvalidArgument, match="content_type"):
        await alice.send_message(conv.conversation_id, "x", "application/x-evil")
    with pytest.raises(errors.InvalidArgument, match="empty"):
        await alice.send_message(conv.conversation_id, "")


async def test_wrong_password_and_unknown_user_are_unauthenticated(pool: Any) -> None:
    with pytest.raises(errors.Unauthenticated, match="wrong user URI or password"):
        await pool.client.sign_in(uri(0), "not-the-password")
    with pytest.raises(errors.Unauthenticated):
        await pool.client.sign_in("sip:nobody@contoso.com", PASSWORD)
    with pytest.raises(errors.InvalidArgument):
        await pool.client.sign_in("nobody", PASSWORD)


async def test_missing_and_forged_tokens(pool: Any) -> None:
    err = await _raw(pool, "ListContacts", pb.ListContactsRequest(), None)
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer" in err.details
    err = await _raw(pool, "ListContacts", pb.ListContactsRequest(), "forged-token-1234567890")
    assert err.code == grpc.StatusCode.UNAUTHENTICATED


async def test_token_dies_with_sign_out(pool: Any) -> None:
    alice = await pool.sign_in(0)
    await alice.sign_out()
    with pytest.raises(errors.Unauthenticated):
        await alice.list_contacts()


async def test_cannot_act_in_someone_elses_conversation(pool: Any) -> None:
    alice, _bob, mallory = [await pool.sign_in(i) for i in range(3)]
    conv = await alice.create_conversation([uri(1)], first_message="private")
    with pytest.raises(errors.PermissionDenied, match="not a participant"):
        await mallory.send_message(conv.conversation_id, "hello?")
    with pytest.raises(errors.PermissionDenied):
        await mallory.invite(conv.conversation_id, uri(3))
    with pytest.raises(errors.PermissionDenied):
        await mallory.accept(conv.conversation_id)
    with pytest.raises(errors.PermissionDenied):
        await mallory.leave(conv.conversation_id)


async def test_blocked_and_do_not_disturb_reachability(pool: Any) -> None:
    alice, bob, carol = [await pool.sign_in(i) for i in range(3)]
    await bob.add_contact(uri(0), AccessLevel.BLOCKED)
    with pytest.raises(errors.PermissionDenied, match="does not accept"):
        await alice.create_conversation([uri(1)], first_message="hi")
    await carol.add_contact(uri(1), AccessLevel.WORKGROUP)
    await carol.publish_presence(9500)
    with pytest.raises(errors.FailedPrecondition, match="Do Not Disturb"):
        await alice.create_conversation([uri(2)], first_message="hi")
    conv = await bob.create_conversation([uri(2)], first_message="urgent")
    assert conv.conversation_id


async def test_endpoint_limit_is_resource_exhausted(pool: Any) -> None:
    for i in range(8):
        await pool.sign_in(0, device=f"d{i}")
    with pytest.raises(errors.ResourceExhausted, match="at most 8"):
        await pool.sign_in(0, device="ninth")


async def test_failed_call_changes_nothing(pool: Any) -> None:
    alice = await pool.sign_in(0)
    await alice.add_contact(uri(1), AccessLevel.WORKGROUP, "Team")
    with pytest.raises(errors.InvalidArgument):
        await alice.add_contact(uri(1), AccessLevel.FRIENDS_AND_FAMILY, "g" * 65)
    assert [(c.access_level, c.group) for c in await alice.list_contacts()] == [
        (AccessLevel.WORKGROUP, "Team")
    ]
