"""The gRPC rows compare servers: a bare server's readers get the event a poolsim reader gets
(the same fields, about the same bytes), and both sides' readers read it with the same code."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from bench import hotpath_grpc as H
from bench.hotpath_servers import PASSWORD, start_server
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.client import PoolClient

DEADLINE = 30.0


def _shape(msg: Message, prefix: str = "") -> set[str]:
    """The paths of the fields set in ``msg``, nested ones included."""
    out = set()
    for field, value in msg.ListFields():
        path = prefix + field.name
        out.add(path)
        if isinstance(value, Message):
            out |= _shape(value, path + ".")
    return out


async def _poolsim_events(address: str) -> dict[str, pb.Event]:
    """The first presence and message events a poolsim reader gets from the bench's users."""
    client = PoolClient(address)
    try:
        sender = await client.sign_in(H._uri(0), PASSWORD, "bench")
        reader = await client.sign_in(H._uri(1), PASSWORD, "bench")
        stub = pb_grpc.FrontEndStub(client.channel())
        call: Any = stub.Events(pb.EventsRequest(), metadata=H._md(reader))
        await reader.subscribe([sender.user_uri])
        await sender.publish_presence(availability=H.BUSY)
        conv = await sender.create_conversation([reader.user_uri])
        await reader.accept(conv.conversation_id)
        await sender.send_message(conv.conversation_id, "x" * H.BODY_WIDTH)
        got: dict[str, pb.Event] = {}
        async with asyncio.timeout(DEADLINE):
            async for ev in call:
                kind = ev.WhichOneof("kind")
                if kind in ("presence", "message") and kind not in got:
                    got[kind] = ev
                if len(got) == 2:
                    break
        call.cancel()
        return got
    finally:
        await client.close()


def test_a_bare_reader_gets_the_event_a_poolsim_reader_gets(tmp_path: Path) -> None:
    server = start_server("poolsim", 3, "memory", tmp_path)
    try:
        got = asyncio.run(_poolsim_events(server.address))
    finally:
        server.stop()
    for kind, fanout in (("presence", True), ("message", False)):
        bare = H.bare_event(fanout)
        if not fanout:
            bare.message.body = "x" * H.BODY_WIDTH
        assert _shape(bare) == _shape(got[kind]), kind
        # the bare message is numbered 10,000 (a bench run's middle), this one 1: its id is
        # "<conversation>:10000", four characters longer, and its sequence two bytes longer
        size, bare_size = got[kind].ByteSize(), bare.ByteSize()
        assert abs(size - bare_size) <= 6, (kind, size, bare_size)


def test_both_sides_read_an_event_with_the_same_code() -> None:
    async def keys(*items: pb.Event) -> list[str | int | None]:
        class Call:
            def __init__(self) -> None:
                self.cancelled = False

            async def __aiter__(self) -> Any:
                for item in items:
                    yield item

            def cancel(self) -> None:
                self.cancelled = True

        return [k async for k in H._keys(Call())]

    presence, message = H.bare_event(True), H.bare_event(False)
    message.message.body = "key-1"
    dropped = pb.Event(dropped=pb.EventsDropped(count=3))
    assert asyncio.run(keys(pb.Event(), presence, message, dropped)) == [
        None,
        str(H.BUSY),
        "key-1",
        3,
    ]
