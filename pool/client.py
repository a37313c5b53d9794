"""An asyncio client of a poolsim pool: every RPC with typed results and typed errors.

    async with PoolClient("127.0.0.1:5061") as client:
        alice = await client.sign_in("sip:user0@contoso.com", "pw")   # follows redirects
        conv = await alice.create_conversation(["sip:user1@contoso.com"], first_message="hi")
        async for event in alice.events():
            ...

Errors are the domain's own (``pool.errors``): a ``grpc.aio.AioRpcError`` is translated where
it happens, ``raise ... from`` the original. Codes with no domain meaning (DEADLINE_EXCEEDED,
CANCELLED, INTERNAL, ...) become ``TransportError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar, cast

import grpc

from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import admin_pb2_grpc as apb_grpc
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api.status import error_of
from pool.errors import PoolError, Redirect
from pool.privacy import AccessLevel

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]
MAX_REDIRECTS = 3


class TransportError(PoolError):
    """The call failed for a reason that is not the pool's answer (deadline, cancel, ...)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code


def translate(exc: grpc.aio.AioRpcError) -> PoolError:
    code = exc.code()
    message = exc.details() or ""
    pairs = cast(Sequence[tuple[str, str | bytes]], exc.trailing_metadata() or ())
    metadata = {key: value for key, value in pairs if isinstance(value, str)}
    error = error_of(code, message, metadata)
    if type(error) is PoolError:
        return TransportError(code, message)
    return error


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except grpc.aio.AioRpcError as exc:
        raise translate(exc) from exc


@dataclass(frozen=True, slots=True)
class Presence:
    user_uri: str
    availability: int
    activity: str
    note: str
    seen_as: AccessLevel
    endpoints: int
    meeting_subject: str = ""
    calendar_until: float = 0.0

    @classmethod
    def of(cls, m: pb.Presence) -> Presence:
        until = m.calendar_until.seconds + m.calendar_until.nanos / 1e9
        return cls(
            m.user_uri,
            m.availability,
            m.activity,
            m.note,
            AccessLevel(m.seen_as),
            m.endpoints,
            m.meeting_subject,
            until,
        )


@dataclass(frozen=True, slots=True)
class Contact:
    user_uri: str
    access_level: AccessLevel
    group: str


@dataclass(frozen=True, slots=True)
class Conversation:
    conversation_id: str
    conference_uri: str
    message_id: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: str
    sequence: int


class PoolClient:
    """Channels to a pool's front ends (one per address, opened on demand)."""

    def __init__(
        self,
        address: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address
        self._credentials = credentials
        self._options = list(options)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, address: str | None = None) -> grpc.aio.Channel:
        address = address or self.address
        channel = self._channels.get(address)
        if channel is None:
            channel = (
                grpc.aio.secure_channel(address, self._credentials, self._options)
                if self._credentials is not None
                else grpc.aio.insecure_channel(address, self._options)
            )
            self._channels[address] = channel
        return channel

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(None)

    async def __aenter__(self) -> PoolClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def sign_in(
        self,
        user_uri: str,
        password: str,
        device: str = "poolsim",
        *,
        deadline: float | None = 30.0,
    ) -> Session:
        """Sign in, following the redirect to the user's home front end."""
        address = self.address
        request = pb.SignInRequest(user_uri=user_uri, password=password, device=device)
        for _ in range(MAX_REDIRECTS + 1):
            stub = pb_grpc.FrontEndStub(self.channel(address))
            try:
                reply = await _call(stub.SignIn(request, timeout=deadline))
            except Redirect as redirect:
                address = redirect.home_address
                continue
            home = reply.home_address or address
            if home != address:
                address = home
            return Session(self, address, user_uri.lower(), reply)
        raise PoolError(f"sign-in of {user_uri} was redirected more than {MAX_REDIRECTS} times")

    def admin(self, token: str) -> AdminClient:
        return AdminClient(self.channel(), token)


class Session:
    """One signed-in endpoint: every FrontEnd call, authorized with its token."""

    def __init__(
        self, client: PoolClient, address: str, user_uri: str, reply: pb.SignInResponse
    ) -> None:
        self.client = client
        self.address = address
        self.user_uri = user_uri
        self.token = reply.token
        self.endpoint_id = reply.endpoint_id
        self.front_end_id = reply.front_end_id
        self.routing_group = reply.routing_group
        self._md: Metadata = (("authorization", f"Bearer {reply.token}"),)
        self._stub = pb_grpc.FrontEndStub(client.channel(address))

    async def sign_out(self) -> None:
        await _call(self._stub.SignOut(pb.SignOutRequest(), metadata=self._md))

    async def events(self) -> AsyncIterator[pb.Event]:
        """This endpoint's events until the server ends the registration or the caller stops."""
        call = self._stub.Events(pb.EventsRequest(), metadata=self._md)
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc
        finally:
            call.cancel()

    async def publish_presence(
        self,
        availability: int = 0,
        activity: str = "",
        note: str | None = None,
        *,
        source: pb.PresenceSource.ValueType = pb.PRESENCE_SOURCE_USER,
        machine_state: pb.MachineState.ValueType = pb.MACHINE_STATE_UNSPECIFIED,
        until: datetime | float | None = None,
        meeting_subject: str = "",
    ) -> Presence:
        request = pb.PublishPresenceRequest(
            source=source,
            availability=availability,
            activity=activity,
            machine_state=machine_state,
            meeting_subject=meeting_subject,
        )
        if note is not None:
            request.note = note
        if until is not None:
            seconds = until.timestamp() if isinstance(until, datetime) else until
            request.until.seconds = int(seconds)
            request.until.nanos = int((seconds - int(seconds)) * 1e9)
        reply = await _call(self._stub.PublishPresence(request, metadata=self._md))
        return Presence.of(reply.presence)

    async def reset_presence(self) -> Presence:
        reply = await _call(self._stub.ResetPresence(pb.ResetPresenceRequest(), metadata=self._md))
        return Presence.of(reply.presence)

    async def get_presence(self, user_uris: Sequence[str]) -> list[Presence]:
        reply = await _call(
            self._stub.GetPresence(
                pb.GetPresenceRequest(user_uris=list(user_uris)), metadata=self._md
            )
        )
        return [Presence.of(p) for p in reply.presences]

    async def subscribe(self, user_uris: Sequence[str], expires_seconds: int = 0) -> list[Presence]:
        reply = await _call(
            self._stub.Subscribe(
                pb.SubscribeRequest(user_uris=list(user_uris), expires_seconds=expires_seconds),
                metadata=self._md,
            )
        )
        return [Presence.of(p) for p in reply.presences]

    async def unsubscribe(self, user_uris: Sequence[str]) -> int:
        reply = await _call(
            self._stub.Unsubscribe(
                pb.UnsubscribeRequest(user_uris=list(user_uris)), metadata=self._md
            )
        )
        return reply.subscriptions

    async def add_contact(
        self, contact_uri: str, access_level: AccessLevel = AccessLevel.UNSPECIFIED, group: str = ""
    ) -> Contact:
        reply = await _call(
            self._stub.AddContact(
                pb.AddContactRequest(
                    contact_uri=contact_uri,
                    access_level=pb.AccessLevel.ValueType(access_level),
                    group=group,
                ),
                metadata=self._md,
            )
        )
        c = reply.contact
        return Contact(c.user_uri, AccessLevel(c.access_level), c.group)

    async def remove_contact(self, contact_uri: str) -> int:
        reply = await _call(
            self._stub.RemoveContact(
                pb.RemoveContactRequest(contact_uri=contact_uri), metadata=self._md
            )
        )
        return reply.contacts

    async def list_contacts(self) -> list[Contact]:
        reply = await _call(self._stub.ListContacts(pb.ListContactsRequest(), metadata=self._md))
        return [Contact(c.user_uri, AccessLevel(c.access_level), c.group) for c in reply.contacts]

    async def create_conversation(
        self,
        invitees: Sequence[str],
        *,
        subject: str = "",
        first_message: str | None = None,
        content_type: str = "text/plain",
    ) -> Conversation:
        request = pb.CreateConversationRequest(invitees=list(invitees), subject=subject)
        if first_message is not None:
            request.first_message.body = first_message
            request.first_message.content_type = content_type
        reply = await _call(self._stub.CreateConversation(request, metadata=self._md))
        return Conversation(
            reply.conversation_id, reply.conference_uri, reply.message_id, reply.sequence
        )

    async def invite(self, conversation_id: str, user_uri: str) -> pb.InviteResponse:
        return await _call(
            self._stub.Invite(
                pb.InviteRequest(conversation_id=conversation_id, user_uri=user_uri),
                metadata=self._md,
            )
        )

    async def accept(self, conversation_id: str) -> pb.AcceptInvitationResponse:
        return await _call(
            self._stub.AcceptInvitation(
                pb.AcceptInvitationRequest(conversation_id=conversation_id), metadata=self._md
            )
        )

    async def decline(self, conversation_id: str) -> None:
        await _call(
            self._stub.DeclineInvitation(
                pb.DeclineInvitationRequest(conversation_id=conversation_id), metadata=self._md
            )
        )

    async def send_message(
        self, conversation_id: str, body: str, content_type: str = "text/plain"
    ) -> Sent:
        reply = await _call(
            self._stub.SendMessage(
                pb.SendMessageRequest(
                    conversation_id=conversation_id, body=body, content_type=content_type
                ),
                metadata=self._md,
            )
        )
        return Sent(reply.message_id, reply.sequence)

    async def set_typing(self, conversation_id: str, typing: bool = True) -> None:
        await _call(
            self._stub.SetTyping(
                pb.SetTypingRequest(conversation_id=conversation_id, typing=typing),
                metadata=self._md,
            )
        )

    async def leave(self, conversation_id: str) -> None:
        await _call(
            self._stub.Leave(pb.LeaveRequest(conversation_id=conversation_id), metadata=self._md)
        )


class AdminClient:
    """PoolAdmin calls with the admin token."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self._stub = apb_grpc.PoolAdminStub(channel)
        self._md: Metadata = (("authorization", f"Bearer {token}"),)

    async def status(self) -> apb.PoolStatus:
        return await _call(self._stub.GetPoolStatus(apb.GetPoolStatusRequest(), metadata=self._md))

    async def provision_users(
        self, prefix: str, domain: str, count: int, password: str, start_index: int = 0
    ) -> apb.ProvisionUsersResponse:
        return await _call(
            self._stub.ProvisionUsers(
                apb.ProvisionUsersRequest(
                    prefix=prefix,
                    domain=domain,
                    count=count,
                    start_index=start_index,
                    password=password,
                ),
                metadata=self._md,
            )
        )

    async def provision_contacts(self, entries: Sequence[tuple[str, str, int, str]]) -> int:
        """Bulk contact lists: (owner uri, contact uri, access level, group) per entry."""
        request = apb.ProvisionContactsRequest(
            contacts=[
                apb.ContactEntry(owner_uri=o, contact_uri=c, access_level=level, group=g)
                for o, c, level, g in entries
            ]
        )
        reply = await _call(self._stub.ProvisionContacts(request, metadata=self._md))
        return reply.written

    async def call_detail_records(self, since: float = 0.0) -> list[apb.CallDetailRecord]:
        request = apb.ListCallDetailRecordsRequest()
        if since:
            request.since.seconds = int(since)
            request.since.nanos = int((since - int(since)) * 1e9)
        call = self._stub.ListCallDetailRecords(request, metadata=self._md)
        try:
            return [record async for record in call]
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc
