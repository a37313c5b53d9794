"""The FrontEnd service: read the request once, make one domain call, build the reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api import calls, convert
from pool.api.feed import STREAM_BATCH, Feed
from pool.api.metrics import Metrics
from pool.api.rpc import Handler, bearer, bidi, unary
from pool.api.session import SessionStream
from pool.registrar import Endpoint
from pool.service import PoolService

Ctx = grpc.aio.ServicerContext[Any, Any]


class FrontEndServicer(pb_grpc.FrontEndServicer, Handler):
    RAW_RESPONSES = ("Session",)  # written as bytes built by ``pool.api.session``

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
        return await calls.sign_out(self.service, self._endpoint(context), request)

    @unary
    async def Events(  # type: ignore[override]  # the stubs know only generator handlers
        self, request: pb.EventsRequest, context: Ctx
    ) -> None:
        """Writes with ``context.write`` (not a generator) so that a write blocked by a reader
        that stopped reading is awaited here, where dropping that reader can end the call."""
        feed = Feed(self.engine, self._endpoint(context))
        ep, queue = feed.ep, feed.queue
        write, shared_event, drain = context.write, convert.shared_event, self.engine.drain
        metrics = self.metrics
        try:
            while feed.attached:
                batch = drain(ep, STREAM_BATCH)
                if batch:
                    for item in batch:
                        await write(shared_event(item))
                    if metrics is not None:
                        metrics.rpc_stream_sent("Events", len(batch))
                    continue
                if queue.closed:
                    return
                await feed.sleep()
        except asyncio.CancelledError:
            if not queue.hard_close:
                raise  # the client went away
            # The reader stopped reading and was signed out while a write waited for it. The
            # status goes out as trailers, which flow control does not hold back.
            raise feed.flow_controlled() from None
        finally:
            feed.close()

    @bidi
    async def Session(  # type: ignore[override]  # the stubs know only generator handlers
        self, requests: AsyncIterator[object], context: Ctx
    ) -> None:
        """The endpoint's calls and events on one stream (``pool.api.session``)."""
        ep = self._endpoint(context)
        await SessionStream(self, ep, bearer(context), context).run(requests)

    @unary
    async def PublishPresence(
        self, request: pb.PublishPresenceRequest, context: Ctx
    ) -> pb.PublishPresenceResponse:
        return await calls.publish_presence(self.service, self._endpoint(context), request)

    @unary
    async def ResetPresence(
        self, request: pb.ResetPresenceRequest, context: Ctx
    ) -> pb.ResetPresenceResponse:
        return await calls.reset_presence(self.service, self._endpoint(context), request)

    @unary
    async def GetPresence(
        self, request: pb.GetPresenceRequest, context: Ctx
    ) -> pb.GetPresenceResponse:
        return await calls.get_presence(self.service, self._endpoint(context), request)

    @unary
    async def Subscribe(self, request: pb.SubscribeRequest, context: Ctx) -> pb.SubscribeResponse:
        return await calls.subscribe(self.service, self._endpoint(context), request)

    @unary
    async def Unsubscribe(
        self, request: pb.UnsubscribeRequest, context: Ctx
    ) -> pb.UnsubscribeResponse:
        return await calls.unsubscribe(self.service, self._endpoint(context), request)

    @unary
    async def AddContact(
        self, request: pb.AddContactRequest, context: Ctx
    ) -> pb.AddContactResponse:
        return await calls.add_contact(self.service, self._endpoint(context), request)

    @unary
    async def RemoveContact(
        self, request: pb.RemoveContactRequest, context: Ctx
    ) -> pb.RemoveContactResponse:
        return await calls.remove_contact(self.service, self._endpoint(context), request)

    @unary
    async def ListContacts(
        self, request: pb.ListContactsRequest, context: Ctx
    ) -> pb.ListContactsResponse:
        return await calls.list_contacts(self.service, self._endpoint(context), request)

    @unary
    async def CreateConversation(
        self, request: pb.CreateConversationRequest, context: Ctx
    ) -> pb.CreateConversationResponse:
        return await calls.create_conversation(self.service, self._endpoint(context), request)

    @unary
    async def Invite(self, request: pb.InviteRequest, context: Ctx) -> pb.InviteResponse:
        return await calls.invite(self.service, self._endpoint(context), request)

    @unary
    async def AcceptInvitation(
        self, request: pb.AcceptInvitationRequest, context: Ctx
    ) -> pb.AcceptInvitationResponse:
        return await calls.accept_invitation(self.service, self._endpoint(context), request)

    @unary
    async def DeclineInvitation(
        self, request: pb.DeclineInvitationRequest, context: Ctx
    ) -> pb.DeclineInvitationResponse:
        return await calls.decline_invitation(self.service, self._endpoint(context), request)

    @unary
    async def SendMessage(
        self, request: pb.SendMessageRequest, context: Ctx
    ) -> pb.SendMessageResponse:
        return await calls.send_message(self.service, self._endpoint(context), request)

    @unary
    async def SetTyping(self, request: pb.SetTypingRequest, context: Ctx) -> pb.SetTypingResponse:
        return await calls.set_typing(self.service, self._endpoint(context), request)

    @unary
    async def Leave(self, request: pb.LeaveRequest, context: Ctx) -> pb.LeaveResponse:
        return await calls.leave(self.service, self._endpoint(context), request)
