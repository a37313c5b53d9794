"""``FrontEnd.Session``: one endpoint's calls and events on one bidirectional stream.

Each call runs the same ``pool.api.calls`` function as its unary RPC, after the same checks
(``Handler.admit``: an undecodable or invalid request; then the token, per call, as a unary
call authenticates), and is counted under its method and code as a unary call is. A call
whose domain call does not wait (every call of a Standard front end) runs to its end at once,
driven by hand (``coroutine.send``), without a task; one that waits (a remote front end of an
Enterprise pool) goes on in a task. Calls with the same key (their conversation id, or "" for
the endpoint's own state: presence, contacts, subscriptions, new conversations) run in the
order they came; a call waits behind a waiting call of its key.

The writer is the handler itself, as for ``Events``: each turn it writes one
``SessionResponse`` holding every reply made since the last write and every queued event. It
is built as bytes (the method's serializer passes bytes through): a reply is its answer's bytes
behind a few bytes of framing, and an event's bytes are made once for all the streams it goes
to. Replies not yet written are bounded (``MAX_BACKLOG``): beyond that the stream stops reading
requests until the client reads.

Each call passes the front end's door (``pool.throttle``) as a unary call does: refused while
the front end is too busy (but SignOut), and held while the endpoint has as many calls under way
as the limit allows; held calls wait in the order they came (``_HeldCalls``) and one held too
long is answered. A call is under way, and its holding time runs, from when its request was
read off the stream (or let in at the door) until the write that carries its reply is done:
what Lync counts from a request's arrival to its response, so that replies a saturated front
end is slow to send count as held, as Lync's do.

The stream ends when the endpoint's registration ends, after the SignedOut event: OK after the
endpoint's own SignOut, else with the status a unary call gets then. A client that half-closes
gets its outstanding replies, then OK (the endpoint stays signed in, as when Events closes).
Calls that arrive once the stream is ending are not run and get no reply (a client sends them
again on a new stream, which answers them as unary calls would be answered then).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.api import convert
from pool.api.calls import ROUTES
from pool.api.decoding import Undecodable
from pool.api.feed import STREAM_BATCH, Feed
from pool.api.framing import field_key, message_type, varint
from pool.api.rpc import status_of
from pool.api.status import DETAILS_KEY
from pool.engine import Reason
from pool.errors import InvalidArgument, PoolError, Unauthenticated, Unavailable
from pool.registrar import Endpoint

if TYPE_CHECKING:
    from pool.api.frontend import FrontEndServicer

MAX_BACKLOG = 1024  # replies unwritten plus calls under way, before reading stops

#: SessionCall fields whose request is about one conversation (the rest: the endpoint's state)
_CONVERSATION_FIELDS = frozenset(
    f
    for f in ROUTES
    if "conversation_id" in message_type(pb.SessionCall.DESCRIPTOR.fields_by_name[f]).fields_by_name
)


#: SessionReply's response field -> its tag
_REPLY_TAG = {
    f.name: field_key(f.number)
    for f in pb.SessionReply.DESCRIPTOR.oneofs_by_name["response"].fields
}
_REPLIES_TAG = field_key(pb.SessionResponse.REPLIES_FIELD_NUMBER)
_EVENTS_TAG = field_key(pb.SessionResponse.EVENTS_FIELD_NUMBER)


def reply_bytes(call_id: int, field: str, answer: Message) -> bytes:
    """A SessionResponse's ``replies`` item holding ``answer`` (the bytes a SessionReply with
    ``id`` and that response field serializes to, framed)."""
    body = answer.SerializeToString()
    reply = _REPLY_TAG[field] + varint(len(body)) + body
    if call_id:
        reply = b"\x08" + varint(call_id) + reply
    return _REPLIES_TAG + varint(len(reply)) + reply


def error_bytes(call_id: int, code: grpc.StatusCode, message: str, trailers: Any) -> bytes:
    error = pb.CallStatus(code=code.value[0], message=message)
    for key, value in trailers:
        if key == DETAILS_KEY and isinstance(value, bytes):
            error.details.extend(status_pb2.Status.FromString(value).details)
        elif isinstance(value, str):
            error.metadata[key] = value
    reply = pb.SessionReply(id=call_id, error=error).SerializeToString()
    return _REPLIES_TAG + varint(len(reply)) + reply


def event_bytes(event: Any) -> bytes:
    data = convert.shared_event_bytes(event)
    return _EVENTS_TAG + varint(len(data)) + data


class _Resume:
    """Awaiting it goes on with a coroutine that was started by hand and is waiting on
    ``pending`` (what its ``send`` yielded): the rest of it runs in the awaiting task."""

    __slots__ = ("_coro", "_pending", "start")

    def __init__(self, coro: Any, pending: Any, start: float) -> None:
        self._coro = coro
        self._pending = pending
        self.start = start  # when the call began (its handler's latency runs from it)

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # thrown into the awaiting task: pass it on
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class _HeldCalls:
    """A stream's calls waiting at the door, as one ``pool.throttle.Waiter``."""

    __slots__ = ("arrived", "calls", "stream", "waiting")

    def __init__(self, stream: SessionStream) -> None:
        self.stream = stream
        self.calls: deque[tuple[str, pb.SessionCall, float]] = deque()  # key, call, arrived
        self.arrived = 0.0
        self.waiting = False  # in its endpoint's waiters

    def wait(self, calls: int) -> None:
        """Wait at the door (again) for the calls held, counting ``calls`` new ones."""
        throttle = self.stream.throttle
        if self.waiting:
            throttle.held += calls
            return
        self.arrived = self.calls[0][2]
        self.waiting = True
        throttle.hold(self.stream.ep, self, calls)

    def admit(self) -> None:
        self.waiting = False
        self.stream._admit_held()

    def expire(self, cutoff: float, error: Callable[[float], PoolError]) -> None:
        self.waiting = False
        self.stream._expire_held(cutoff, error)


class SessionStream:
    def __init__(self, servicer: FrontEndServicer, ep: Endpoint, token: str, context: Any) -> None:
        self.servicer = servicer
        self.service = servicer.service
        self.throttle = servicer.throttle
        self.held = _HeldCalls(self)
        self.metrics = servicer.metrics
        self.monotonic = servicer.monotonic
        self.ep = ep
        self.token = token
        self.context = context
        self.replies: list[bytes] = []
        #: calls whose reply is in ``replies``, under way until it is written, and the sum of
        #: the times they came (their holding time: ``unwritten * now - unwritten_since``)
        self.unwritten = 0
        self.unwritten_since = 0.0
        #: key -> calls waiting behind a call of that key that is under way
        self.lanes: dict[str, deque[pb.SessionCall]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.failed: BaseException | None = None  # the request stream broke
        self.client_done = False
        self.closing = False  # the stream is ending: calls that come now are not run
        self._room: asyncio.Future[None] | None = None
        self.feed: Feed | None = None

    # --- the stream ---

    async def run(self, requests: AsyncIterator[object]) -> None:
        feed = self.feed = Feed(self.servicer.engine, self.ep)
        metrics = self.metrics
        if metrics is not None:
            metrics.session.opened()
        reader = asyncio.get_running_loop().create_task(self._read(requests))
        try:
            await self._write(feed)
        except asyncio.CancelledError:
            if not feed.queue.hard_close:
                raise  # the client went away
            raise feed.flow_controlled() from None  # see ``pool.api.feed``
        finally:
            reader.cancel()
            for task in list(self.tasks):
                task.cancel()
            if self.held.calls:  # never run, never answered: a client sends them again
                self.held.calls.clear()
                self.held.waiting = False
                self.throttle.forget(self.ep, self.held)
            self._written()  # replies never written: their calls are no longer under way
            feed.close()
            if metrics is not None:
                metrics.session.closed()

    async def _write(self, feed: Feed) -> None:
        write = self.context.write
        metrics = self.metrics
        try:
            await self._write_until_done(feed, write)
        finally:
            # Calls that came after this point are not run (a client sends them again on a new
            # stream): every call that ran gets its reply written below, or the stream's status.
            self.closing = True
        if self.replies:
            replies, self.replies = self.replies, []
            await write(b"".join(replies))
            self._written()
            if metrics is not None:
                metrics.rpc_stream_sent("Session", 1)
                metrics.session.sent(len(replies), 0)

    async def _write_until_done(self, feed: Feed, write: Any) -> None:
        ep, queue, drain = self.ep, feed.queue, self.servicer.engine.drain
        metrics = self.metrics
        while feed.attached:
            events = drain(ep, STREAM_BATCH) if len(queue) else ()
            if self.replies or events:
                replies, self.replies = self.replies, []
                calls, since = self._take_unwritten()
                data = b"".join(replies)
                if events:
                    data += b"".join([event_bytes(e) for e in events])
                try:
                    await write(data)
                finally:  # written, or the stream broke: either way no longer under way
                    if calls:
                        self._done(calls, since)
                if metrics is not None:
                    metrics.rpc_stream_sent("Session", 1)
                    metrics.session.sent(len(replies), len(events))
                room = self._room
                if room is not None and not room.done():
                    room.set_result(None)
                continue
            if self.failed is not None:
                raise self.failed
            if queue.closed:
                self._ended(queue.close_reason)
                return
            if self.client_done and not self.tasks and not self.lanes:
                return
            await feed.sleep()

    def _done(self, calls: int, since: float) -> None:
        """``calls`` calls (which came at times summing to ``since``) are answered: their
        holding time ends and their endpoint's slots are free."""
        ep, throttle = self.ep, self.throttle
        throttle.finished_many(calls, since, self.monotonic())
        ep.outstanding -= calls
        if ep.waiters:
            throttle.release(ep)

    def _take_unwritten(self) -> tuple[int, float]:
        """The calls whose replies wait to be written (how many, the sum of when they came),
        from now on the write's to end."""
        calls, since = self.unwritten, self.unwritten_since
        self.unwritten, self.unwritten_since = 0, 0.0
        return calls, since

    def _written(self) -> None:
        """Whatever replies are not written yet: their calls end (written at the stream's end,
        or never)."""
        if self.unwritten:
            self._done(*self._take_unwritten())

    def _ended(self, reason: str) -> None:
        """The registration ended: return for the client's own SignOut, else raise what a
        unary call would get now."""
        if reason == Reason.CLIENT:
            return
        if reason == Reason.SHUTDOWN:
            raise Unavailable("the front end is shutting down: sign in again later")
        self.service.authenticate(self.token)  # raises: a redirect, or the token is gone
        raise Unauthenticated(f"the registration ended ({reason}): sign in again")

    async def _read(self, requests: AsyncIterator[object]) -> None:
        metrics = self.metrics
        try:
            async for message in requests:
                if type(message) is Undecodable:
                    self.servicer.admit("Session", message)  # raises InvalidArgument
                assert isinstance(message, pb.SessionRequest)
                if metrics is not None:
                    metrics.rpc_stream_received("Session", 1)
                    metrics.session.received(len(message.calls))
                take, came = self._take, self.monotonic()
                for call in message.calls:
                    take(call, came)
                self._poke()
                while len(self.replies) + len(self.tasks) >= MAX_BACKLOG:
                    self._room = asyncio.get_running_loop().create_future()
                    await self._room
        except Exception as exc:  # an undecodable batch, or the client's side broke
            self.failed = exc
        self.client_done = True
        self._poke()

    def _poke(self) -> None:
        if self.feed is not None:
            self.feed.poke()

    # --- calls ---

    def _take(self, call: pb.SessionCall, came: float) -> None:
        """``call`` was read at ``came``."""
        if self.closing:
            return
        field = call.WhichOneof("request")
        key = getattr(call, field).conversation_id if field in _CONVERSATION_FIELDS else ""
        lane = self.lanes.get(key)
        if lane is not None:
            lane.append(call)
        else:
            self._run(key, call, came)

    def _run(self, key: str, call: pb.SessionCall, came: float, admitted: bool = False) -> None:
        """Start ``call`` (read, or let in at the door, at ``came``) and, while calls end at
        once, the ones waiting behind it on ``key`` (``admitted``: ``call`` comes from the
        door, which let it in). A call waiting in its lane is under way from its start."""
        ep, throttle = self.ep, self.throttle
        while True:
            if not admitted and (ep.outstanding >= throttle.limit or self.held.calls):
                self._hold(key, call)
                return
            admitted = False
            pending = self._start(call, came)
            if pending is not None:
                self.lanes.setdefault(key, deque())
                task = asyncio.get_running_loop().create_task(
                    self._finish(key, call, pending, came)
                )
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                return
            lane = self.lanes.get(key)
            if not lane:
                self.lanes.pop(key, None)
                return
            call = lane.popleft()
            came = self.monotonic()

    def _start(self, call: pb.SessionCall, came: float) -> _Resume | None:
        """Run ``call`` until it ends or waits: None when it ended (its reply made), else
        what to await for the rest of it. From here the call is under way (``came``: since
        when) until its reply is written."""
        self.ep.outstanding += 1
        self.throttle.started(came)
        pending = self._begin(call)
        if pending is None:
            self.unwritten += 1
            self.unwritten_since += came
        return pending

    def _begin(self, call: pb.SessionCall) -> _Resume | None:
        start = self.monotonic()
        field = call.WhichOneof("request")
        if field is None:
            self._failed(call.id, "Session", InvalidArgument("the call holds no request"), start)
            return None
        name, run, _ = ROUTES[field]
        if self.metrics is not None:
            self.metrics.rpc_started(name)
        if start < self.throttle.busy_until and field != "sign_out":
            self._failed(call.id, name, self.throttle.too_busy(), start)
            return None
        try:
            request = getattr(call, field)
            self.servicer.admit(name, request)
            coro = run(self.service, self.service.authenticate(self.token), request)
            try:
                pending = coro.send(None)
            except StopIteration as stop:
                self._ok(call, field, stop.value, start)
                return None
        except Exception as exc:
            self._failed(call.id, name, exc, start)
            return None
        return _Resume(coro, pending, start)

    async def _finish(self, key: str, call: pb.SessionCall, rest: _Resume, came: float) -> None:
        field = call.WhichOneof("request")
        assert field is not None
        replied = False
        try:
            answer = await rest
        except Exception as exc:
            self._failed(call.id, ROUTES[field][0], exc, rest.start)
            replied = True
        else:
            self._ok(call, field, answer, rest.start)
            replied = True
        finally:
            if replied:  # under way until its reply is written
                self.unwritten += 1
                self.unwritten_since += came
            else:  # cancelled: the stream is ending, no reply
                self._done(1, came)
        lane = self.lanes.get(key)
        if lane:
            self._run(key, lane.popleft(), self.monotonic())
        else:
            self.lanes.pop(key, None)
        self._poke()

    def _ok(self, call: pb.SessionCall, field: str, answer: Message, start: float) -> None:
        """Reply ``answer`` (the call's handler began at ``start``)."""
        name, _, out = ROUTES[field]
        self.replies.append(reply_bytes(call.id, out, answer))
        if self.metrics is not None:
            self.metrics.rpc_done(name, "OK", self.monotonic() - start)
            self.metrics.session.call(name)

    def _failed(self, call_id: int, name: str, exc: BaseException, start: float) -> None:
        """Reply the status of ``exc``."""
        code, message, trailers = status_of(name, exc)
        self.replies.append(error_bytes(call_id, code, message, trailers))
        if self.metrics is not None:
            self.metrics.rpc_done(name, code.name, self.monotonic() - start)
            self.metrics.session.call(name)

    # --- the door ---

    def _hold(self, key: str, call: pb.SessionCall) -> None:
        """``call`` waits at the door; calls of ``key`` that come later wait behind it."""
        self.lanes.setdefault(key, deque())
        self.held.calls.append((key, call, self.monotonic()))
        self.held.wait(1)

    def _admit_held(self) -> None:
        """The endpoint is under its limit: run held calls while it stays so."""
        held, ep, throttle = self.held, self.ep, self.throttle
        now = self.monotonic()
        while held.calls and ep.outstanding < throttle.limit:
            key, call, _ = held.calls.popleft()
            self._run(key, call, now, admitted=True)
        if held.calls:
            held.wait(0)
        self._poke()

    def _expire_held(self, cutoff: float, error: Callable[[float], PoolError]) -> None:
        """Answer the held calls that came at or before ``cutoff``; their lanes go on."""
        held = self.held
        while held.calls and held.calls[0][2] <= cutoff:
            key, call, arrived = held.calls.popleft()
            field = call.WhichOneof("request")
            name = ROUTES[field][0] if field is not None else "Session"
            if self.metrics is not None:
                self.metrics.rpc_started(name)
            self._failed(call.id, name, error(arrived), arrived)
            lane = self.lanes.get(key)
            if lane:
                self._run(key, lane.popleft(), self.monotonic())
            elif not any(k == key for k, _, _ in held.calls):
                self.lanes.pop(key, None)
        if held.calls:
            held.wait(0)
        self._poke()
