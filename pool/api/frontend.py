"""The FrontEnd service: read the request once, make one domain call, build the reply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api import convert
from pool.api.metrics import Metrics
from pool.api.rpc import Handler, bearer, unary
from pool.errors import ResourceExhausted
from pool.events import ChatMessage
from pool.registrar import Endpoint
from pool.service import PoolService

Ctx = grpc.aio.ServicerContext[Any, Any]


class FlowControlled(ResourceExhausted):
    """The endpoint was dropped for not reading its events."""


STREAM_BATCH = 256


class FrontEndServicer(pb_grpc.FrontEndServicer, Handler):
    def __init__(
        self,
        service: PoolService,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.service = service
        self.engine = service.engine
        self.metrics = metrics
        self.monotonic = monotonic or service.engine.clock.monotonic

    def _endpoint(self, context: Ctx) -> Endpoint:
        return self.service.authenticate(bearer(context))

    @unary
    async def SignIn(self, request: pb.SignInRequest, context: Ctx) -> pb.SignInResponse:
        engine = self.engine
        ep = await self.service.sign_in(request.user_uri, request.password, request.device)
        return pb.SignInResponse(
            token=ep.token,
            endpoint_id=ep.id,
            home_address=engine.address,
            front_end_id=engine.config.front_end_id,
            routing_group=ep.user.routing_group,
            registration_expires_seconds=int(engine.config.timers.registration_expiry),
        )

    @unary
    async def SignOut(self, request: pb.SignOutRequest, context: Ctx) -> pb.SignOutResponse:
        await self.service.sign_out(self._endpoint(context))
        return pb.SignOutResponse()

    @unary
    async def Events(  # type: ignore[override]  # the stubs know only generator handlers
        self, request: pb.EventsRequest, context: Ctx
    ) -> None:
        """Writes with ``context.write`` (not a generator) so that a write blocked by a reader
        that stopped reading is awaited here, where dropping that reader can end the call."""
        engine = self.engine
        ep = self._endpoint(context)
        queue = ep.queue
        previous = queue.waker
        if previous is not None:
            previous()  # an older stream of this endpoint: it sees it was replaced and ends
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        # The future this stream sleeps on while its queue is empty (None while it works): one
        # wake-up per sleep, however many events arrive before the stream runs again. Events
        # queued in the same turn of the loop are drained together.
        idle: asyncio.Future[None] | None = None

        def waker() -> None:
            if idle is not None and not idle.done():
                idle.set_result(None)
            if queue.hard_close and task is not None:
                task.cancel()  # the reader stopped reading: do not wait for its writes

        queue.waker = waker
        engine.open_stream(ep)
        write, shared_event, drain = context.write, convert.shared_event, engine.drain
        metrics = self.metrics
        try:
            while queue.waker is waker:
                batch = drain(ep, STREAM_BATCH)
                if batch:
                    for item in batch:
                        await write(shared_event(item))
                    if metrics is not None:
                        metrics.rpc_stream_sent("Events", len(batch))
                    continue
                if queue.closed:
                    return
                idle = loop.create_future()
                try:
                    await idle
                finally:
                    idle = None
        except asyncio.CancelledError:
            if not queue.hard_close:
                raise  # the client went away
            # The reader stopped reading and was signed out while a write waited for it. The
            # status goes out as trailers, which flow control does not hold back.
            raise FlowControlled(
                f"{ep.uri} (endpoint {ep.id}) read nothing for "
                f"{engine.config.timers.flow_control_timeout:g} s while its event queue was "
                "full: signed out (flow-controlled); sign in again"
            ) from None
        finally:
            if queue.waker is waker:
                queue.waker = None
            engine.close_stream(ep)

    @unary
    async def PublishPresence(
        self, request: pb.PublishPresenceRequest, context: Ctx
    ) -> pb.PublishPresenceResponse:
        ep = self._endpoint(context)
        view = await self.service.publish(ep, convert.publication(request))
        return pb.PublishPresenceResponse(presence=convert.presence(view))

    @unary
    async def ResetPresence(
        self, request: pb.ResetPresenceRequest, context: Ctx
    ) -> pb.ResetPresenceResponse:
        view = await self.service.reset_presence(self._endpoint(context))
        return pb.ResetPresenceResponse(presence=convert.presence(view))

    @unary
    async def GetPresence(
        self, request: pb.GetPresenceRequest, context: Ctx
    ) -> pb.GetPresenceResponse:
        views = await self.service.get_presence(self._endpoint(context), list(request.user_uris))
        return pb.GetPresenceResponse(presences=[convert.presence(v) for v in views])

    @unary
    async def Subscribe(self, request: pb.SubscribeRequest, context: Ctx) -> pb.SubscribeResponse:
        ep = self._endpoint(context)
        views = await self.service.subscribe(
            ep, list(request.user_uris), float(request.expires_seconds)
        )
        return pb.SubscribeResponse(
            presences=[convert.presence(v) for v in views], subscriptions=ep.user.subscriptions
        )

    @unary
    async def Unsubscribe(
        self, request: pb.UnsubscribeRequest, context: Ctx
    ) -> pb.UnsubscribeResponse:
        left = await self.service.unsubscribe(self._endpoint(context), list(request.user_uris))
        return pb.UnsubscribeResponse(subscriptions=left)

    @unary
    async def AddContact(
        self, request: pb.AddContactRequest, context: Ctx
    ) -> pb.AddContactResponse:
        ep = self._endpoint(context)
        c = await self.service.add_contact(
            ep, request.contact_uri, int(request.access_level), request.group
        )
        return pb.AddContactResponse(contact=convert.contact(c), contacts=len(ep.user.contacts))

    @unary
    async def RemoveContact(
        self, request: pb.RemoveContactRequest, context: Ctx
    ) -> pb.RemoveContactResponse:
        left = await self.service.remove_contact(self._endpoint(context), request.contact_uri)
        return pb.RemoveContactResponse(contacts=left)

    @unary
    async def ListContacts(
        self, request: pb.ListContactsRequest, context: Ctx
    ) -> pb.ListContactsResponse:
        contacts = await self.service.list_contacts(self._endpoint(context))
        return pb.ListContactsResponse(contacts=[convert.contact(c) for c in contacts])

    @unary
    async def CreateConversation(
        self, request: pb.CreateConversationRequest, context: Ctx
    ) -> pb.CreateConversationResponse:
        ep = self._endpoint(context)
        first = (
            ChatMessage(request.first_message.body, request.first_message.content_type)
            if request.HasField("first_message")
            else None
        )
        conv = await self.service.create_conversation(
            ep, list(request.invitees), request.subject, first
        )
        seq = conv.sequence
        return pb.CreateConversationResponse(
            conversation_id=conv.conversation_id,
            conference_uri=conv.conference_uri,
            message_id=f"{conv.conversation_id}:{seq}" if seq else "",
            sequence=seq,
        )

    @unary
    async def Invite(self, request: pb.InviteRequest, context: Ctx) -> pb.InviteResponse:
        invited = await self.service.invite(
            self._endpoint(context), request.conversation_id, request.user_uri
        )
        return pb.InviteResponse(escalated=invited.escalated, conference_uri=invited.conference_uri)

    @unary
    async def AcceptInvitation(
        self, request: pb.AcceptInvitationRequest, context: Ctx
    ) -> pb.AcceptInvitationResponse:
        joined = await self.service.accept(self._endpoint(context), request.conversation_id)
        return pb.AcceptInvitationResponse(
            participants=joined.participants, conference_uri=joined.conference_uri
        )

    @unary
    async def DeclineInvitation(
        self, request: pb.DeclineInvitationRequest, context: Ctx
    ) -> pb.DeclineInvitationResponse:
        await self.service.decline(self._endpoint(context), request.conversation_id)
        return pb.DeclineInvitationResponse()

    @unary
    async def SendMessage(
        self, request: pb.SendMessageRequest, context: Ctx
    ) -> pb.SendMessageResponse:
        message_id, seq = await self.service.send_message(
            self._endpoint(context), request.conversation_id, request.body, request.content_type
        )
        return pb.SendMessageResponse(message_id=message_id, sequence=seq)

    @unary
    async def SetTyping(self, request: pb.SetTypingRequest, context: Ctx) -> pb.SetTypingResponse:
        await self.service.set_typing(
            self._endpoint(context), request.conversation_id, request.typing
        )
        return pb.SetTypingResponse()

    @unary
    async def Leave(self, request: pb.LeaveRequest, context: Ctx) -> pb.LeaveResponse:
        await self.service.leave(self._endpoint(context), request.conversation_id)
        return pb.LeaveResponse()
