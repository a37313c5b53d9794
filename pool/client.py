"""An asyncio client of a poolsim pool: every RPC with typed results and typed errors.

    async with PoolClient(["127.0.0.1:5061", "127.0.0.1:5062"]) as client:  # or one address
        alice = await client.sign_in("sip:user0@contoso.com", "pw")   # follows redirects
        conv = await alice.create_conversation(["sip:user1@contoso.com"], first_message="hi")
        async for event in alice.events():
            ...

Errors are the domain's own (``pool.errors``): a ``grpc.aio.AioRpcError`` is translated where
it happens, ``raise ... from`` the original. Codes with no domain meaning (DEADLINE_EXCEEDED,
CANCELLED, INTERNAL, ...) become ``TransportError``.

Reconnection (Enterprise): ``sign_in`` starts at the first address and moves on to the next
known one while a front end is unavailable; addresses learned from redirects are remembered in
``client.addresses``. A ``Session`` re-registers by itself (``PoolClient(..., reconnect=True)``,
the default): when a call fails with ``Unavailable`` (its front end died or is stopping) or
``Redirect`` (its user's home moved), it signs in again with the same password and device -
at the redirect's home, else where it was, else at the other known front ends - takes the new
token and endpoint, counts ``session.reconnections`` and retries the call once. Concurrent
failures reconnect once. If signing in again fails, that error is raised (a pool that lost
quorum gives its own ``Unavailable`` message). ``Unauthenticated`` never reconnects, nor does a
session after ``sign_out()``. ``events()`` likewise opens a new stream on the new endpoint when
the stream fails that way or ends with SignedOut "home-server-changed".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc

from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import admin_pb2_grpc as apb_grpc
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api.status import DETAILS_KEY, error_of
from pool.errors import PoolError, Redirect, Unavailable
from pool.privacy import AccessLevel

if TYPE_CHECKING:
    from pool._proto.poolsim.v1.frontend_pb2_grpc import FrontEndAsyncStub

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]
MAX_REDIRECTS = 3
#: SignedOut reasons after which ``Session.events`` signs in again (when reconnecting)
RECONNECT_REASONS = frozenset({pb.END_REASON_HOME_SERVER_CHANGED})
#: how long an event stream keeps trying to sign in again after its front end failed (a
#: fail-over takes the pool a second or two: until then the user's new home is not known)
STREAM_RECONNECT_WINDOW = 30.0

STOP_MODES: dict[str, apb.StopMode.ValueType] = {
    "drain": apb.STOP_MODE_DRAIN,
    "crash": apb.STOP_MODE_CRASH,
}
RESET_TYPES: dict[str, apb.ResetType.ValueType] = {
    "service-reset": apb.RESET_TYPE_SERVICE_RESET,
    "quorum-loss-recovery": apb.RESET_TYPE_QUORUM_LOSS_RECOVERY,
    "full-reset": apb.RESET_TYPE_FULL_RESET,
    "machine-state-removed": apb.RESET_TYPE_MACHINE_STATE_REMOVED,
    "quorum-loss-recovery-from-replicas": apb.RESET_TYPE_QUORUM_LOSS_RECOVERY_FROM_REPLICAS,
}


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
    details = next((v for k, v in pairs if k == DETAILS_KEY and isinstance(v, bytes)), b"")
    error = error_of(code, message, metadata, details)
    if type(error) is PoolError:
        return TransportError(code, message)
    return error


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except grpc.aio.AioRpcError as exc:
        raise translate(exc) from exc


def _unavailable(error: BaseException) -> bool:
    """The front end is down, stopping or without quorum: worth trying elsewhere."""
    return isinstance(error, Unavailable) or (
        isinstance(error, TransportError) and error.code == grpc.StatusCode.UNAVAILABLE
    )


def _reconnects(error: BaseException) -> bool:
    """A session's call failed in a way that signing in again may cure."""
    return isinstance(error, Redirect) or _unavailable(error)


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
    """Channels to a pool's front ends (one per address, opened on demand).

    ``address`` is one front end's ``host:port`` or a sequence of them (a pool's front ends):
    ``address`` is the first, ``addresses`` all that are known, those learned from redirects
    included. ``reconnect`` makes sessions re-register by themselves (see the module doc).
    """

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        reconnect: bool = True,
        stream_reconnect_window: float = STREAM_RECONNECT_WINDOW,
    ) -> None:
        given = [address] if isinstance(address, str) else list(address)
        if not given or not all(given):
            raise ValueError("PoolClient needs at least one front end address")
        self.addresses: tuple[str, ...] = tuple(dict.fromkeys(given))
        self.address = self.addresses[0]
        self.reconnect = reconnect
        #: seconds an event stream keeps trying to sign in again while no front end takes it
        self.stream_reconnect_window = stream_reconnect_window
        self._credentials = credentials
        self._options = list(options)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def learn(self, address: str) -> None:
        """Remember a front end's address (appended to ``addresses`` unless known)."""
        if address and address not in self.addresses:
            self.addresses = (*self.addresses, address)

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
        """Sign in, following the redirect to the user's home front end.

        Starts at ``address``; while a front end is unavailable, tries the next known one.
        """
        address, reply = await self._sign_in(user_uri, password, device, deadline, self.address)
        session = Session(self, address, user_uri.lower(), reply)
        session._remember(user_uri, password, device, deadline)
        return session

    async def _sign_in(
        self,
        user_uri: str,
        password: str,
        device: str,
        deadline: float | None,
        first: str,
    ) -> tuple[str, pb.SignInResponse]:
        """SignIn at ``first``, then at the other known front ends while one is unavailable,
        following redirects from each (at most MAX_REDIRECTS): the address signed in at and
        the reply. When none could be reached, the error of a front end that answered (its own
        reason, e.g. a quorum loss) wins over a connection failure."""
        request = pb.SignInRequest(user_uri=user_uri, password=password, device=device)
        tried: set[str] = set()
        answered: PoolError | None = None
        unreachable: PoolError | None = None
        while True:
            start = next((a for a in (first, *self.addresses) if a and a not in tried), None)
            if start is None:
                break
            tried.add(start)
            address = start
            for _ in range(MAX_REDIRECTS + 1):
                channel = self.channel(address)
                stub = pb_grpc.FrontEndStub(channel)
                try:
                    reply = await _call(stub.SignIn(request, timeout=deadline))
                except Redirect as redirect:
                    address = redirect.home_address
                    self.learn(address)
                    continue
                except PoolError as error:
                    if not _unavailable(error):
                        raise
                    tried.add(address)
                    if channel.get_state() == grpc.ChannelConnectivity.READY:
                        answered = answered or error
                    else:
                        unreachable = unreachable or error
                    break
                home = reply.home_address or address
                self.learn(home)
                return home, reply
            else:
                raise PoolError(
                    f"sign-in of {user_uri} was redirected more than {MAX_REDIRECTS} times"
                )
        failure = answered or unreachable
        if failure is None:  # not reached: ``addresses`` is never empty
            raise PoolError(f"no front end to sign {user_uri} in at")
        raise failure

    def admin(self, token: str) -> AdminClient:
        return AdminClient(self.channel(), token)


class Session:
    """One signed-in endpoint: every FrontEnd call, authorized with its token.

    With ``auto_reconnect`` (the client's ``reconnect``), a call that fails because the front end
    is unavailable or the user's home moved signs in again and is retried once (module doc).
    """

    def __init__(
        self, client: PoolClient, address: str, user_uri: str, reply: pb.SignInResponse
    ) -> None:
        self.client = client
        self.user_uri = user_uri
        #: re-registrations so far (automatic or through ``reconnect()``)
        self.reconnections = 0
        #: whether a failed call or event stream signs in again by itself
        self.auto_reconnect = False
        self._signed_out = False
        self._sign_in_as: tuple[str, str, str, float | None] | None = None
        self._lock = asyncio.Lock()
        self._generation = 0
        self._adopt(address, reply)

    def _adopt(self, address: str, reply: pb.SignInResponse) -> None:
        self.address = address
        self.token = reply.token
        self.endpoint_id = reply.endpoint_id
        self.front_end_id = reply.front_end_id
        self.routing_group = reply.routing_group
        self._md: Metadata = (("authorization", f"Bearer {reply.token}"),)
        self._stub = pb_grpc.FrontEndStub(self.client.channel(address))

    def _remember(self, user_uri: str, password: str, device: str, deadline: float | None) -> None:
        """What to sign in again with; turns automatic reconnection on as the client says."""
        self._sign_in_as = (user_uri, password, device, deadline)
        self.auto_reconnect = self.client.reconnect

    async def reconnect(self) -> None:
        """Sign in again now (a new endpoint, token and maybe front end): at the current
        address first, then at the other known front ends. Raises what that sign-in raised.
        Works after ``sign_out()`` too, but automatic reconnection stays off then."""
        async with self._lock:
            await self._sign_in_again(None)
            self._signed_out = False

    async def _sign_in_again(self, home: str | None) -> None:
        """Under ``_lock``: sign in with the remembered credentials and take the new endpoint."""
        if self._sign_in_as is None:
            raise PoolError(f"{self.user_uri}: no credentials to sign in again with")
        user_uri, password, device, deadline = self._sign_in_as
        address, reply = await self.client._sign_in(
            user_uri, password, device, deadline, home or self.address
        )
        self._adopt(address, reply)
        self._generation += 1
        self.reconnections += 1

    async def _recover(self, generation: int, error: PoolError, follow: bool | None) -> bool:
        """After ``error`` on ``generation``: whether to try again (having signed in again if
        no other call did so already). Raises the sign-in's error when that fails."""
        if not _reconnects(error):
            return False
        async with self._lock:
            if not (self.auto_reconnect if follow is None else follow):
                return False
            if self._signed_out or self._sign_in_as is None:
                return False
            if self._generation != generation:
                return True  # another call reconnected meanwhile: just retry
            home = error.home_address if isinstance(error, Redirect) else None
            await self._sign_in_again(home)
            return True

    async def _unary(self, rpc: Callable[[FrontEndAsyncStub, Metadata], Awaitable[T]]) -> T:
        """One call with this session's stub and token; on Unavailable or Redirect, sign in
        again (once for concurrent failures) and retry the call once."""
        generation = self._generation
        try:
            return await _call(rpc(self._stub, self._md))
        except PoolError as error:
            if not await self._recover(generation, error, None):
                raise
        return await _call(rpc(self._stub, self._md))

    async def sign_out(self) -> None:
        """End this endpoint; the session no longer reconnects by itself."""
        self.auto_reconnect = False
        async with self._lock:  # after a reconnect under way: sign out its endpoint
            self._signed_out = True
            await _call(self._stub.SignOut(pb.SignOutRequest(), metadata=self._md))

    async def events(self, reconnect: bool | None = None) -> AsyncGenerator[pb.Event, None]:
        """This endpoint's events until the server ends the registration or the caller stops.

        With ``reconnect`` (default: ``auto_reconnect``), a stream that fails with Unavailable
        or Redirect, or ends after a SignedOut "home-server-changed"
        (which is yielded first), signs in again and goes on with the new endpoint's stream.
        """
        while True:
            generation = self._generation
            call = self._stub.Events(pb.EventsRequest(), metadata=self._md)
            ended_by: PoolError | None = None
            try:
                async for event in call:
                    ended_by = None
                    if event.WhichOneof("kind") == "signed_out":
                        reason = event.signed_out.reason
                        if reason in RECONNECT_REASONS:
                            ended_by = Unavailable(
                                "signed out by the server: the user's home front end changed"
                            )
                    yield event
            except grpc.aio.AioRpcError as exc:
                error = translate(exc)
                if not await self._recover_stream(generation, error, reconnect):
                    raise error from exc
                continue
            finally:
                call.cancel()
            if ended_by is None or not await self._recover_stream(generation, ended_by, reconnect):
                return

    async def _recover_stream(self, generation: int, error: PoolError, follow: bool | None) -> bool:
        """``_recover`` for the event stream, which has no caller to retry it: while signing in
        again fails for want of a front end (the pool is failing over), try again with a
        growing pause, for up to the client's ``stream_reconnect_window`` seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.client.stream_reconnect_window
        pause = 0.05
        while True:
            try:
                return await self._recover(generation, error, follow)
            except PoolError as failed:
                if not _unavailable(failed) or loop.time() + pause > end:
                    raise
            await asyncio.sleep(pause)
            pause = min(2 * pause, 1.0)

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
        reply = await self._unary(lambda stub, md: stub.PublishPresence(request, metadata=md))
        return Presence.of(reply.presence)

    async def reset_presence(self) -> Presence:
        reply = await self._unary(
            lambda stub, md: stub.ResetPresence(pb.ResetPresenceRequest(), metadata=md)
        )
        return Presence.of(reply.presence)

    async def get_presence(self, user_uris: Sequence[str]) -> list[Presence]:
        reply = await self._unary(
            lambda stub, md: stub.GetPresence(
                pb.GetPresenceRequest(user_uris=list(user_uris)), metadata=md
            )
        )
        return [Presence.of(p) for p in reply.presences]

    async def subscribe(self, user_uris: Sequence[str], expires_seconds: int = 0) -> list[Presence]:
        reply = await self._unary(
            lambda stub, md: stub.Subscribe(
                pb.SubscribeRequest(user_uris=list(user_uris), expires_seconds=expires_seconds),
                metadata=md,
            )
        )
        return [Presence.of(p) for p in reply.presences]

    async def unsubscribe(self, user_uris: Sequence[str]) -> int:
        reply = await self._unary(
            lambda stub, md: stub.Unsubscribe(
                pb.UnsubscribeRequest(user_uris=list(user_uris)), metadata=md
            )
        )
        return reply.subscriptions

    async def add_contact(
        self, contact_uri: str, access_level: AccessLevel = AccessLevel.UNSPECIFIED, group: str = ""
    ) -> Contact:
        reply = await self._unary(
            lambda stub, md: stub.AddContact(
                pb.AddContactRequest(
                    contact_uri=contact_uri,
                    access_level=pb.AccessLevel.ValueType(access_level),
                    group=group,
                ),
                metadata=md,
            )
        )
        c = reply.contact
        return Contact(c.user_uri, AccessLevel(c.access_level), c.group)

    async def remove_contact(self, contact_uri: str) -> int:
        reply = await self._unary(
            lambda stub, md: stub.RemoveContact(
                pb.RemoveContactRequest(contact_uri=contact_uri), metadata=md
            )
        )
        return reply.contacts

    async def list_contacts(self) -> list[Contact]:
        reply = await self._unary(
            lambda stub, md: stub.ListContacts(pb.ListContactsRequest(), metadata=md)
        )
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
        reply = await self._unary(lambda stub, md: stub.CreateConversation(request, metadata=md))
        return Conversation(
            reply.conversation_id, reply.conference_uri, reply.message_id, reply.sequence
        )

    async def invite(self, conversation_id: str, user_uri: str) -> pb.InviteResponse:
        return await self._unary(
            lambda stub, md: stub.Invite(
                pb.InviteRequest(conversation_id=conversation_id, user_uri=user_uri),
                metadata=md,
            )
        )

    async def accept(self, conversation_id: str) -> pb.AcceptInvitationResponse:
        return await self._unary(
            lambda stub, md: stub.AcceptInvitation(
                pb.AcceptInvitationRequest(conversation_id=conversation_id), metadata=md
            )
        )

    async def decline(self, conversation_id: str) -> None:
        await self._unary(
            lambda stub, md: stub.DeclineInvitation(
                pb.DeclineInvitationRequest(conversation_id=conversation_id), metadata=md
            )
        )

    async def send_message(
        self, conversation_id: str, body: str, content_type: str = "text/plain"
    ) -> Sent:
        reply = await self._unary(
            lambda stub, md: stub.SendMessage(
                pb.SendMessageRequest(
                    conversation_id=conversation_id, body=body, content_type=content_type
                ),
                metadata=md,
            )
        )
        return Sent(reply.message_id, reply.sequence)

    async def set_typing(self, conversation_id: str, typing: bool = True) -> None:
        await self._unary(
            lambda stub, md: stub.SetTyping(
                pb.SetTypingRequest(conversation_id=conversation_id, typing=typing),
                metadata=md,
            )
        )

    async def leave(self, conversation_id: str) -> None:
        await self._unary(
            lambda stub, md: stub.Leave(
                pb.LeaveRequest(conversation_id=conversation_id), metadata=md
            )
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

    async def stop_front_end(self, front_end_id: str, mode: str = "drain") -> apb.PoolStatus:
        """Stop a front end (Enterprise): "drain" hands its routing groups over and signs its
        users out first, "crash" kills it at once. The pool's status right after."""
        stop_mode = STOP_MODES.get(mode)
        if stop_mode is None:
            raise ValueError(f"stop mode must be one of {', '.join(STOP_MODES)}, not {mode!r}")
        reply = await _call(
            self._stub.StopFrontEnd(
                apb.StopFrontEndRequest(id=front_end_id, mode=stop_mode), metadata=self._md
            )
        )
        return reply.status

    async def start_front_end(self, front_end_id: str) -> apb.PoolStatus:
        """Start a front end that is down, or a new one (Enterprise): the status once it is up."""
        reply = await _call(
            self._stub.StartFrontEnd(apb.StartFrontEndRequest(id=front_end_id), metadata=self._md)
        )
        return reply.status

    async def reset_pool_registrar_state(
        self, reset_type: str, front_end_id: str = ""
    ) -> apb.ResetPoolRegistrarStateResponse:
        """Reset-CsPoolRegistrarState (Enterprise): ``reset_type`` is one of "service-reset",
        "quorum-loss-recovery", "full-reset", "machine-state-removed" (with ``front_end_id``)."""
        value = RESET_TYPES.get(reset_type)
        if value is None:
            raise ValueError(
                f"reset type must be one of {', '.join(RESET_TYPES)}, not {reset_type!r}"
            )
        return await _call(
            self._stub.ResetPoolRegistrarState(
                apb.ResetPoolRegistrarStateRequest(reset_type=value, front_end_id=front_end_id),
                metadata=self._md,
            )
        )
