"""The FrontEnd service: read the request once, make one domain call, build the reply.

An endpoint's calls (``pool.api.calls``) pass the front end's door first (``pool.throttle``):
refused while the front end is too busy (but SignOut), held while the endpoint has as many
requests under way as the limit allows; the time from there to the answer is the request's
holding time.
"""

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
from pool.api.rpc import Handler, abort, bearer, bidi, code_after, unary
from pool.api.session import SessionStream
from pool.errors import PoolError
from pool.registrar import Endpoint
from pool.service import PoolService
from pool.throttle import Throttle

Ctx = grpc.aio.ServicerContext[Any, Any]


class _Held:
    """A unary call waiting at the door (``pool.throttle.Waiter``): ``future`` is done once
    it holds a slot of its endpoint, or with the error it is answered with."""

    __slots__ = ("arrived", "ep", "future")

    def __init__(self, ep: Endpoint, arrived: float) -> None:
        self.ep = ep
        self.arrived = arrived
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def admit(self) -> None:
        if not self.future.done():  # else cancelled, and about to leave
            self.ep.outstanding += 1
            self.future.set_result(None)

    def expire(self, cutoff: float, error: Callable[[float], PoolError]) -> None:
        if not self.future.done():
            self.future.set_exception(error(self.arrived))


async def _wait_turn(throttle: Throttle, ep: Endpoint, now: float) -> None:
    """Wait at the door until ``ep`` holds a slot (or raise what the held call is answered)."""
    held = _Held(ep, now)
    throttle.hold(ep, held)
    try:
        await held.future
    except asyncio.CancelledError:
        throttle.forget(ep, held)
        if held.future.done() and not held.future.cancelled() and not held.future.exception():
            ep.outstanding -= 1  # let in, then cancelled before it ran: give the slot back
            throttle.release(ep)
        raise


def _endpoint_call(name: str) -> Any:
    """The unary RPC ``name`` of a signed-in endpoint: the door, then its call.

    What ``pool.api.rpc.unary`` does for a handler (the request admitted, the outcome counted
    by method and code, a failure answered as one status) is done here in the same coroutine
    as the door, with one clock reading for both: one layer fewer on every call.
    """
    run = calls.CALLS[name]
    signing_out = name == "SignOut"

    async def method(self: FrontEndServicer, request: Any, context: Ctx) -> Any:
        now = start = self.monotonic()
        metrics = self.metrics
        if metrics is not None:
            metrics.rpc_started(name)
        failure: BaseException | None = None
        try:
            self.admit(name, request)
            throttle = self.throttle
            if now < throttle.busy_until and not signing_out:
                raise throttle.too_busy()
            ep = self._endpoint(context)
            if ep.outstanding >= throttle.limit or ep.waiters:
                await _wait_turn(throttle, ep, now)
                now = self.monotonic()
            else:
                ep.outstanding += 1
            throttle.started(now)
            try:
                return await run(self.service, ep, request)
            finally:
                throttle.finished(now, self.monotonic())
                ep.outstanding -= 1
                if ep.waiters:
                    throttle.release(ep)
        except grpc.aio.AbortError as exc:  # already a status
            failure = exc
            raise
        except Exception as exc:  # domain errors and bugs alike become one status
            failure = exc
            await abort(context, name, exc)
            raise
        finally:
            if metrics is not None:
                metrics.rpc_done(name, code_after(context, failure), self.monotonic() - start)

    method.__name__ = method.__qualname__ = name
    return method


class FrontEndServicer(pb_grpc.FrontEndServicer, Handler):
    # written as bytes: Events' serialized once per event for all its readers (a fan-out),
    # Session's built by ``pool.api.session``
    RAW_RESPONSES = ("Events", "Session")

    def __init__(
        self,
        service: PoolService,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.service = service
        self.engine = service.engine
        self.throttle = service.engine.throttle
        self.metrics = metrics
        self.monotonic = monotonic or service.engine.clock.monotonic

    def _endpoint(self, context: Ctx) -> Endpoint:
        return self.service.authenticate(bearer(context))

    @unary
    async def SignIn(self, request: pb.SignInRequest, context: Ctx) -> pb.SignInResponse:
        engine = self.engine
        throttle = self.throttle
        start = self.monotonic()
        if start < throttle.busy_until:
            raise throttle.too_busy()
        throttle.started(start)
        try:
            ep = await self.service.sign_in(request.user_uri, request.password, request.device)
        finally:
            throttle.finished(start, self.monotonic())
        return pb.SignInResponse(
            token=ep.token,
            endpoint_id=ep.id,
            home_address=engine.address,
            front_end_id=engine.config.front_end_id,
            routing_group=ep.user.routing_group,
            registration_expires_seconds=int(engine.config.timers.registration_expiry),
        )

    @unary
    async def Events(  # type: ignore[override]  # the stubs know only generator handlers
        self, request: pb.EventsRequest, context: Ctx
    ) -> None:
        """Writes with ``context.write`` (not a generator) so that a write blocked by a reader
        that stopped reading is awaited here, where dropping that reader can end the call."""
        feed = Feed(self.engine, self._endpoint(context))
        ep, queue = feed.ep, feed.queue
        write, wire, drain = context.write, convert.shared_event_bytes, self.engine.drain
        metrics = self.metrics
        try:
            while feed.attached:
                batch = drain(ep, STREAM_BATCH)
                if batch:
                    for item in batch:
                        await write(wire(item))  # serialized once for all its readers
                    if metrics is not None:
                        metrics.rpc_stream_sent("Events", len(batch))
                    if len(batch) == STREAM_BATCH or queue.closed:
                        continue  # more may be held; or it closed: end after what is left
                elif queue.closed:
                    return
                await feed.sleep()  # at once if anything happened while it wrote
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

    # an endpoint's calls (``pool.api.calls``), each behind the door
    SignOut = _endpoint_call("SignOut")
    PublishPresence = _endpoint_call("PublishPresence")
    ResetPresence = _endpoint_call("ResetPresence")
    GetPresence = _endpoint_call("GetPresence")
    Subscribe = _endpoint_call("Subscribe")
    Unsubscribe = _endpoint_call("Unsubscribe")
    AddContact = _endpoint_call("AddContact")
    RemoveContact = _endpoint_call("RemoveContact")
    ListContacts = _endpoint_call("ListContacts")
    CreateConversation = _endpoint_call("CreateConversation")
    Invite = _endpoint_call("Invite")
    AcceptInvitation = _endpoint_call("AcceptInvitation")
    DeclineInvitation = _endpoint_call("DeclineInvitation")
    SendMessage = _endpoint_call("SendMessage")
    SetTyping = _endpoint_call("SetTyping")
    Leave = _endpoint_call("Leave")
