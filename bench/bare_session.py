"""The bare baseline of the session rows: a ``grpc.aio`` bidirectional stream of the same shape
as ``FrontEnd.Session`` and no logic.

Each client opens ``/bench.Bare/Session`` with metadata ``x-user`` (its number),
``x-partner`` (where its messages go) and ``x-watchers`` (where its presence goes). Every
``SessionRequest`` is parsed; each call is answered with an empty reply of its id, and becomes
one event (a message with the call's body, or a presence with its availability and note),
serialized once and written to the stream of each of those users. Replies and events are
written as one ``SessionResponse`` per stream per loop turn, as poolsim's are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.api.framing import field_key, varint

_REPLIES = field_key(pb.SessionResponse.REPLIES_FIELD_NUMBER)
_EVENTS = field_key(pb.SessionResponse.EVENTS_FIELD_NUMBER)
_EMPTY_REPLY = field_key(pb.SessionReply.SEND_MESSAGE_FIELD_NUMBER) + b"\x00"


class _Outbox:
    __slots__ = ("items", "wake")

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.wake: asyncio.Future[None] | None = None

    def put(self, data: bytes) -> None:
        self.items.append(data)
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)


class BareSession:
    def __init__(self) -> None:
        self.outboxes: dict[str, _Outbox] = {}

    def _event(self, call: pb.SessionCall) -> bytes:
        event = pb.Event()
        if call.HasField("publish_presence"):
            p = call.publish_presence
            event.presence.presence.availability = p.availability
            event.presence.presence.note = p.note
        else:
            event.message.body = call.send_message.body
            event.message.conversation_id = call.send_message.conversation_id
        data = event.SerializeToString()
        return _EVENTS + varint(len(data)) + data

    async def _read(
        self, requests: AsyncIterator[bytes], me: _Outbox, partner: list[str], watchers: list[str]
    ) -> None:
        outboxes = self.outboxes
        try:
            async for raw in requests:
                for call in pb.SessionRequest.FromString(raw).calls:
                    reply = b"\x08" + varint(call.id) + _EMPTY_REPLY
                    me.put(_REPLIES + varint(len(reply)) + reply)
                    event = self._event(call)
                    to = watchers if call.HasField("publish_presence") else partner
                    for user in to:
                        box = outboxes.get(user)
                        if box is not None:
                            box.put(event)
        finally:
            wake = me.wake
            if wake is not None and not wake.done():
                wake.set_result(None)

    async def session(self, requests: AsyncIterator[bytes], context: Any) -> None:
        md = dict(context.invocation_metadata() or ())
        user = str(md.get("x-user", ""))
        partner, watchers = (
            [u for u in str(md.get(key, "")).split(",") if u] for key in ("x-partner", "x-watchers")
        )
        me = self.outboxes[user] = _Outbox()
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read(requests, me, partner, watchers))
        try:
            while not reader.done():
                if me.items:
                    data, me.items = b"".join(me.items), []
                    await context.write(data)
                    continue
                me.wake = loop.create_future()
                await me.wake
                me.wake = None
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            if self.outboxes.get(user) is me:
                del self.outboxes[user]
