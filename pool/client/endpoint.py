"""``Session``: one signed-in endpoint and every FrontEnd call it makes, over either transport.

Over "unary" each call is its own RPC and ``events()`` reads the ``Events`` stream; over
"session" the endpoint's calls and events share one ``FrontEnd.Session`` stream
(``pool.client.stream``), opened at sign-in. Either way a call returns the same value or raises
the same error, and reconnection (``pool.client`` module doc) works the same: signing in again
opens a new stream for the new endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.message import Message

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.client.errors import _call, _reconnects, _unavailable, translate
from pool.client.stream import CallStream, Unanswered
from pool.client.values import Contact, Conversation, Presence, Sent
from pool.errors import PoolError, Redirect, Unavailable
from pool.privacy import AccessLevel

if TYPE_CHECKING:
    from pool.client.pool import PoolClient

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]
#: SignedOut reasons after which ``Session.events`` signs in again (when reconnecting)
RECONNECT_REASONS = frozenset({pb.END_REASON_HOME_SERVER_CHANGED})


def _settle(answer: asyncio.Future[Message], retry: asyncio.Future[Message]) -> None:
    """Give ``answer`` the outcome of ``retry`` (unless the caller cancelled it)."""
    if answer.done():
        return
    if retry.cancelled():
        answer.cancel()
    elif (error := retry.exception()) is not None:
        answer.set_exception(error)
    else:
        answer.set_result(retry.result())


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
        self._retry_now = partial(self._retry, 0)
        #: the endpoint's Session stream (transport "session"), None over unary
        self.stream: CallStream | None = None
        self._adopt(address, reply)

    @property
    def transport(self) -> str:
        return self.client.transport

    def _adopt(self, address: str, reply: pb.SignInResponse) -> None:
        self.address = address
        self.token = reply.token
        self.endpoint_id = reply.endpoint_id
        self.front_end_id = reply.front_end_id
        self.routing_group = reply.routing_group
        self._md: Metadata = (("authorization", f"Bearer {reply.token}"),)
        channel = self.client.channel(address)
        self._stub = pb_grpc.FrontEndStub(channel)
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if self.client.transport == "session":
            self.stream = CallStream(channel, self._md)

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
        self._retry_now = partial(self._retry, self._generation)
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

    async def _send(self, method: str, reply_type: type[T], request: Message) -> T:
        stream = self.stream
        if stream is not None:
            if stream.spent:  # it ended (e.g. signed out): a new one answers as unary would
                stream = self.stream = CallStream(self.client.channel(self.address), self._md)
            try:
                answer = await stream.call(method, request)
            except Unanswered:  # not run: the stream was ending
                if self.stream is stream:
                    self.stream = CallStream(self.client.channel(self.address), self._md)
                stream = self.stream or stream
                answer = await stream.call(method, request)
        else:
            answer = await _call(getattr(self._stub, method)(request, metadata=self._md))
        assert isinstance(answer, reply_type)
        return answer

    async def _invoke(self, method: str, reply_type: type[T], request: Message) -> T:
        """One call with this session's token; on Unavailable or Redirect, sign in again (once
        for concurrent failures) and retry the call once."""
        generation = self._generation
        stream = self.stream
        if stream is not None and not stream.spent:  # the hot path: one await, no layer
            try:
                answer = await stream.call(method, request)
            except PoolError as error:
                answer = await self._after(generation, method, request, error)
        else:
            answer = await self._after(generation, method, request, None)
        assert isinstance(answer, reply_type)
        return answer

    async def _after(
        self, generation: int, method: str, request: Message, error: BaseException | None
    ) -> Message:
        """The rest of ``_invoke`` once its stream's call failed with ``error`` (None: no
        stream to try): a call not run goes again on a new stream; Unavailable or Redirect
        signs in again and retries."""
        try:
            if error is None or isinstance(error, Unanswered):
                return await self._send(method, Message, request)
            raise error
        except PoolError as failed:
            if not await self._recover(generation, failed, None):
                raise
        return await self._send(method, Message, request)

    async def call(self, method: str, request: Message) -> Message:
        """Any FrontEnd call by its method name (``"GetPresence"``), answered with its raw
        response message, unconverted: for a caller that does not read the values (a load
        driver). The same transport, errors and reconnection as the typed methods."""
        return await self._invoke(method, Message, request)

    def start(self, method: str, request: Message) -> asyncio.Future[Message]:
        """``call``, begun now, its answer a future: on a Session stream no task nor coroutine
        per call, for a caller with many calls in flight. The same errors and reconnection
        (a call that fails in a way ``call`` would retry is retried in a task of its own).
        Cancelling the future abandons the call (the server may still run it, as with a
        cancelled ``call``)."""
        stream = self.stream
        if stream is None or stream.spent:
            return asyncio.ensure_future(self._invoke(method, Message, request))
        return stream.call(method, request, self._retry_now)

    def _retry(
        self,
        generation: int,
        answer: asyncio.Future[Any],
        method: str,
        request: Message,
        error: PoolError,
    ) -> None:
        """A call of ``start`` made at ``generation`` failed with ``error``: the rest of
        ``_invoke``, in a task, its outcome given to ``answer``. (Bound to the generation once
        per sign-in, ``_retry_now``: nothing is made per call for a failure that seldom comes.)"""
        retry = asyncio.ensure_future(self._after(generation, method, request, error))
        retry.add_done_callback(partial(_settle, answer))

    async def sign_out(self) -> None:
        """End this endpoint; the session no longer reconnects by itself."""
        self.auto_reconnect = False
        async with self._lock:  # after a reconnect under way: sign out its endpoint
            self._signed_out = True
            await self._send("SignOut", pb.SignOutResponse, pb.SignOutRequest())
            if self.stream is not None:  # the server ends it now: write nothing more to it
                self.stream.retire()

    def close(self) -> None:
        """Close this endpoint's Session stream, if it has one (the endpoint stays signed in
        until its registration expires, as when an Events stream closes)."""
        if self.stream is not None:
            self.stream.close()

    async def events(self, reconnect: bool | None = None) -> AsyncGenerator[pb.Event, None]:
        """This endpoint's events until the server ends the registration or the caller stops.

        With ``reconnect`` (default: ``auto_reconnect``), a stream that fails with Unavailable
        or Redirect, or ends after a SignedOut "home-server-changed"
        (which is yielded first), signs in again and goes on with the new endpoint's stream.
        Over the session transport the events come on the endpoint's Session stream.
        """
        while True:
            generation = self._generation
            ended_by: PoolError | None = None
            stream = self.stream  # over a Session stream its events, with no layer between
            source = stream.next_events() if stream is not None else self._events_stream()
            try:
                async for event in source:
                    ended_by = None
                    if (
                        event.WhichOneof("kind") == "signed_out"
                        and event.signed_out.reason in RECONNECT_REASONS
                    ):
                        ended_by = Unavailable(
                            "signed out by the server: the user's home front end changed"
                        )
                    yield event
            except PoolError as error:
                if self._generation != generation:
                    continue  # a call signed in again meanwhile: read the new endpoint's
                if not await self._recover_stream(generation, error, reconnect):
                    raise
                continue
            if self._generation != generation and ended_by is None and not self._signed_out:
                continue
            if ended_by is None or not await self._recover_stream(generation, ended_by, reconnect):
                return

    async def _events_stream(self) -> AsyncGenerator[pb.Event, None]:
        """The events over unary: the ``Events`` stream."""
        call = self._stub.Events(pb.EventsRequest(), metadata=self._md)
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as exc:
            raise translate(exc) from exc
        finally:
            call.cancel()

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
        reply = await self._invoke("PublishPresence", pb.PublishPresenceResponse, request)
        return Presence.of(reply.presence)

    async def reset_presence(self) -> Presence:
        reply = await self._invoke(
            "ResetPresence", pb.ResetPresenceResponse, pb.ResetPresenceRequest()
        )
        return Presence.of(reply.presence)

    async def get_presence(self, user_uris: Sequence[str]) -> list[Presence]:
        reply = await self._invoke(
            "GetPresence", pb.GetPresenceResponse, pb.GetPresenceRequest(user_uris=list(user_uris))
        )
        return [Presence.of(p) for p in reply.presences]

    async def subscribe(self, user_uris: Sequence[str], expires_seconds: int = 0) -> list[Presence]:
        reply = await self._invoke(
            "Subscribe",
            pb.SubscribeResponse,
            pb.SubscribeRequest(user_uris=list(user_uris), expires_seconds=expires_seconds),
        )
        return [Presence.of(p) for p in reply.presences]

    async def unsubscribe(self, user_uris: Sequence[str]) -> int:
        reply = await self._invoke(
            "Unsubscribe", pb.UnsubscribeResponse, pb.UnsubscribeRequest(user_uris=list(user_uris))
        )
        return reply.subscriptions

    async def add_contact(
        self, contact_uri: str, access_level: AccessLevel = AccessLevel.UNSPECIFIED, group: str = ""
    ) -> Contact:
        reply = await self._invoke(
            "AddContact",
            pb.AddContactResponse,
            pb.AddContactRequest(
                contact_uri=contact_uri,
                access_level=pb.AccessLevel.ValueType(access_level),
                group=group,
            ),
        )
        c = reply.contact
        return Contact(c.user_uri, AccessLevel(c.access_level), c.group)

    async def remove_contact(self, contact_uri: str) -> int:
        reply = await self._invoke(
            "RemoveContact",
            pb.RemoveContactResponse,
            pb.RemoveContactRequest(contact_uri=contact_uri),
        )
        return reply.contacts

    async def list_contacts(self) -> list[Contact]:
        reply = await self._invoke(
            "ListContacts", pb.ListContactsResponse, pb.ListContactsRequest()
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
        reply = await self._invoke("CreateConversation", pb.CreateConversationResponse, request)
        return Conversation(
            reply.conversation_id, reply.conference_uri, reply.message_id, reply.sequence
        )

    async def invite(self, conversation_id: str, user_uri: str) -> pb.InviteResponse:
        return await self._invoke(
            "Invite",
            pb.InviteResponse,
            pb.InviteRequest(conversation_id=conversation_id, user_uri=user_uri),
        )

    async def accept(self, conversation_id: str) -> pb.AcceptInvitationResponse:
        return await self._invoke(
            "AcceptInvitation",
            pb.AcceptInvitationResponse,
            pb.AcceptInvitationRequest(conversation_id=conversation_id),
        )

    async def decline(self, conversation_id: str) -> None:
        await self._invoke(
            "DeclineInvitation",
            pb.DeclineInvitationResponse,
            pb.DeclineInvitationRequest(conversation_id=conversation_id),
        )

    async def send_message(
        self, conversation_id: str, body: str, content_type: str = "text/plain"
    ) -> Sent:
        reply = await self._invoke(
            "SendMessage",
            pb.SendMessageResponse,
            pb.SendMessageRequest(
                conversation_id=conversation_id, body=body, content_type=content_type
            ),
        )
        return Sent(reply.message_id, reply.sequence)

    async def set_typing(self, conversation_id: str, typing: bool = True) -> None:
        await self._invoke(
            "SetTyping",
            pb.SetTypingResponse,
            pb.SetTypingRequest(conversation_id=conversation_id, typing=typing),
        )

    async def leave(self, conversation_id: str) -> None:
        await self._invoke(
            "Leave", pb.LeaveResponse, pb.LeaveRequest(conversation_id=conversation_id)
        )
