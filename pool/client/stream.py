"""One endpoint's ``FrontEnd.Session`` stream, client side: a future per call, events queued.

Calls made in the same turn of the event loop (or while the previous batch is being written)
go out together in one ``SessionRequest``, built as bytes: each call is its request's bytes
behind a few bytes of framing. Each ``SessionResponse`` resolves the futures of its replies (an
error reply raises the same ``pool.errors`` error the unary call would have) and queues its
events for ``events()``. When the stream ends, the calls still waiting fail with its status.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import status_pb2

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.api.framing import field_key, message_type, varint
from pool.api.status import error_of
from pool.client.errors import TransportError, translate
from pool.errors import PoolError

METHOD = "/poolsim.v1.FrontEnd/Session"
EVENTS_KEPT = 10_000  # events held for a reader not yet reading; older ones are discarded

_REQUESTS = pb.SessionCall.DESCRIPTOR.oneofs_by_name["request"].fields
#: unary method name -> the tag of its SessionCall field
_CALL_TAG = {message_type(f).name.removesuffix("Request"): field_key(f.number) for f in _REQUESTS}
#: SessionCall field name -> the unary method name (to read a call back from its bytes)
_METHOD_OF_FIELD = {f.name: message_type(f).name.removesuffix("Request") for f in _REQUESTS}
_CALLS_TAG = field_key(pb.SessionRequest.CALLS_FIELD_NUMBER)
_CODES = {code.value[0]: code for code in grpc.StatusCode}


def error_of_reply(error: pb.CallStatus) -> PoolError:
    """The error a unary call would have raised for this status."""
    code = _CODES.get(error.code, grpc.StatusCode.UNKNOWN)
    details = b""
    if error.details:
        details = status_pb2.Status(
            code=error.code, message=error.message, details=list(error.details)
        ).SerializeToString()
    found = error_of(code, error.message, dict(error.metadata), details)
    return TransportError(code, error.message) if type(found) is PoolError else found


class Unanswered(TransportError):
    """The stream ended (OK) before the server ran this call: send it again on a new one."""


#: what grpc's client reports when its write fails because the server has already ended the
#: stream: the server's own status is lost (grpc core), and the server runs no call that comes
#: once its stream is ending, so the calls still waiting were not run
_CORE_LOST_STATUS = "Internal error from Core"


def _lost_status(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() == grpc.StatusCode.INTERNAL and exc.details() == _CORE_LOST_STATUS


#: takes a failed call's future, method name, request and error instead of the future taking
#: the error
ErrorHandler = Callable[[asyncio.Future[Any], str, Message, PoolError], None]


def _read_call(field: bytes) -> tuple[str, Message]:
    """The method and request of a call from its request field's bytes (tag, length, body):
    on their own they are a SessionCall with only that field set."""
    call = pb.SessionCall.FromString(field)
    name = call.WhichOneof("request")
    assert name is not None
    request: Message = getattr(call, name)
    return _METHOD_OF_FIELD[name], request


class CallStream:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        metadata: tuple[tuple[str, str], ...],
        method: str = METHOD,
    ) -> None:
        rpc = channel.stream_stream(
            method,
            request_serializer=None,  # bytes built here
            response_deserializer=pb.SessionResponse.FromString,
        )
        self._call: Any = rpc(metadata=metadata)  # type: ignore[call-arg]  # written to
        self._futures: dict[int, asyncio.Future[Any]] = {}
        #: the calls whose failure goes to a handler instead of their future, by id, and their
        #: request as it was written (bytes: no object held per call for the collector to scan)
        self._on_error: dict[int, ErrorHandler] = {}
        self._written: dict[int, bytes] = {}
        self._next = 0
        self._outbox: list[bytes] = []
        self._wake: asyncio.Future[None] | None = None
        self.events: deque[pb.Event] = deque()
        self.discarded = 0  # events dropped for want of a reader
        self._event_waiter: asyncio.Future[None] | None = None
        #: how the stream ended: None while open, else the error (or a PoolError-free end)
        self.ended: PoolError | None = None
        self.done = False
        #: takes no more calls: it ended, or it is ending (after its endpoint's SignOut)
        self.spent = False
        #: the loop, kept: asking asyncio for the running loop costs a system call per ask
        self.loop = loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write())
        self._reader = loop.create_task(self._read())

    def call(
        self, method: str, request: Message, on_error: ErrorHandler | None = None
    ) -> asyncio.Future[Any]:
        """Send one call; the future gets the reply's response message, or its error (given
        instead to ``on_error`` when there is one, with the future and the call's method and
        request, read back from the bytes written: the stream holds no request object)."""
        future: asyncio.Future[Any] = self.loop.create_future()
        if self.spent:
            ended = self.ended or Unanswered(
                grpc.StatusCode.CANCELLED, "the session stream is ending"
            )
            if on_error is None:
                future.set_exception(ended)
            else:
                on_error(future, method, request, ended)
            return future
        self._next += 1
        call_id = self._next
        self._futures[call_id] = future
        body = request.SerializeToString()
        field = _CALL_TAG[method] + varint(len(body)) + body
        if on_error is not None:
            self._on_error[call_id] = on_error
            self._written[call_id] = field
        item = b"\x08" + varint(call_id) + field
        self._outbox.append(_CALLS_TAG + varint(len(item)) + item)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)
        return future

    async def _write(self) -> None:
        write = self._call.write
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, Exception):
            while True:
                if not self._outbox:
                    self._wake = self.loop.create_future()
                    await self._wake
                    self._wake = None
                batch, self._outbox = self._outbox, []
                await write(b"".join(batch))

    async def _read(self) -> None:
        ended: PoolError | None = None
        try:
            futures, on_error = self._futures, self._on_error
            async for response in self._call:
                for reply in response.replies:
                    call_id = reply.id
                    future = futures.pop(call_id, None)
                    handler = on_error.pop(call_id, None) if on_error else None
                    written = self._written.pop(call_id, b"") if handler else b""
                    if future is None or future.done():
                        continue
                    if field := reply.WhichOneof("response"):  # the error is not in the oneof
                        future.set_result(getattr(reply, field))
                    elif reply.HasField("error"):
                        self._fail(future, error_of_reply(reply.error), handler, written)
                    else:
                        future.set_result(None)
                if response.events:
                    events = self.events
                    events.extend(response.events)
                    while len(events) > EVENTS_KEPT:
                        events.popleft()
                        self.discarded += 1
                    self._notify()
        except grpc.aio.AioRpcError as exc:
            ended = None if _lost_status(exc) else translate(exc)
        except asyncio.CancelledError:
            ended = TransportError(grpc.StatusCode.CANCELLED, "the session stream was closed")
        self.ended = ended
        self.done = self.spent = True
        self._writer.cancel()
        failure = ended or Unanswered(
            grpc.StatusCode.CANCELLED, "the session stream ended before the call was run"
        )
        for call_id, future in self._futures.items():
            if not future.done():
                handler = self._on_error.get(call_id)
                self._fail(future, failure, handler, self._written.get(call_id, b""))
        self._futures.clear()
        self._on_error.clear()
        self._written.clear()
        self._notify()

    @staticmethod
    def _fail(
        future: asyncio.Future[Any], error: PoolError, handler: ErrorHandler | None, field: bytes
    ) -> None:
        if handler is None:
            future.set_exception(error)
        else:
            handler(future, *_read_call(field), error)

    def _notify(self) -> None:
        waiter = self._event_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_events(self) -> AsyncIterator[pb.Event]:
        """The events as they come, until the stream ends (raising its error, if any)."""
        while True:
            while self.events:
                yield self.events.popleft()
            if self.done:
                if self.ended is not None:
                    raise self.ended
                return
            self._event_waiter = self.loop.create_future()
            try:
                await self._event_waiter
            finally:
                self._event_waiter = None

    def retire(self) -> None:
        """Take no more calls (its endpoint signed out: the server is ending it); the events
        still coming are read to its end."""
        self.spent = True

    def close(self) -> None:
        self._call.cancel()
        self._writer.cancel()
