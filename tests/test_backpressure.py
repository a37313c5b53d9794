"""Bounded event queues, flow control and registration expiry, through a real grpc.aio server
on loopback with the fake clock.

A reader that stops reading must cost the server a bounded amount of memory (capacity + one
drop marker per endpoint), must not slow the sender down, and is signed out ("flow-controlled")
once its oldest unread event has waited 60 s. A reader that reads learns what it missed from one
``dropped`` event with the count.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.cdr import RegistrationRecord
from pool.client import Session
from pool.config import EngineConfig
from pool.engine import FLOW_SWEEP_INTERVAL
from pool.errors import Unauthenticated
from pool.registrar import Endpoint
from tests.conftest import StandardPool, eventually, start_standard, uri
from tests.contract.helpers import inbox

CAPACITY = 50
BODY = "x" * 2000  # about 2 KB per message event
STREAM_END_DEADLINE = 10.0  # seconds a closed stream may take to reach a loopback client
EventsCall = grpc.aio.UnaryStreamCall[pb.EventsRequest, pb.Event]


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[StandardPool]:
    config = EngineConfig(password_iterations=1, event_queue_capacity=CAPACITY)
    p = await start_standard(tmp_path, config)
    try:
        yield p
    finally:
        await p.close()


def endpoint(pool: StandardPool, endpoint_id: str) -> Endpoint:
    found = [ep for ep in pool.engine.registrar if ep.id == endpoint_id]
    assert len(found) == 1, f"endpoint {endpoint_id} is not registered"
    return found[0]


def registration_reasons(pool: StandardPool) -> dict[str, str]:
    """endpoint id -> de-registration reason, from the store's call detail records."""
    return {
        stored.record.endpoint_id: stored.record.deregister_reason
        for stored in pool.engine.store.list_cdr(0)
        if isinstance(stored.record, RegistrationRecord)
    }


async def step(pool: StandardPool, seconds: float, step_size: float = FLOW_SWEEP_INTERVAL) -> None:
    """Advance the fake clock by ``seconds`` in steps, running the timers at each step and
    letting the server's tasks run in between (as they would while real time passes)."""
    left = seconds
    while left > 0:
        pool.advance(min(step_size, left))
        left -= step_size
        await asyncio.sleep(0)


# --- a reader that stops reading ---


@contextlib.asynccontextmanager
async def silent_reader(pool: StandardPool, session: Session) -> AsyncIterator[EventsCall]:
    """An Events call of ``session`` that never reads, on a connection of its own (no HTTP/2
    window shared with the sender's calls) and without BDP probing, so the client's window
    stays at its initial size and fills soon."""
    channel = grpc.aio.insecure_channel(
        pool.address,
        options=[("grpc.use_local_subchannel_pool", 1), ("grpc.http2.bdp_probe", 0)],
    )
    stub = pb_grpc.FrontEndStub(channel)
    md = (("authorization", f"Bearer {session.token}"),)
    call = stub.Events(pb.EventsRequest(), metadata=md)
    try:
        ep = endpoint(pool, session.endpoint_id)
        await eventually(lambda: ep.streams == 1, what="the silent reader's stream is open")
        yield call
    finally:
        call.cancel()
        await channel.close(None)


async def flood(pool: StandardPool, alice: Session, bob: Session, sent: int = 3000) -> None:
    """alice sends bob ``sent`` messages of 2 KB in an accepted two-party conversation; every
    send succeeds and bob's queue never holds more than capacity + 1 items."""
    bob_ep = endpoint(pool, bob.endpoint_id)
    conv = await alice.create_conversation([uri(1)])
    await bob.accept(conv.conversation_id)
    deepest = 0
    sequences: list[int] = []
    for _ in range(sent):
        result = await alice.send_message(conv.conversation_id, BODY)  # never an error
        sequences.append(result.sequence)
        deepest = max(deepest, len(bob_ep.queue))
        assert len(bob_ep.queue) <= CAPACITY + 1
    assert sequences == list(range(1, sent + 1))
    assert deepest == CAPACITY + 1  # full, plus the one marker counting what was dropped


async def test_reader_that_stops_reading_is_bounded_then_flow_controlled(
    pool: StandardPool,
) -> None:
    alice = await pool.sign_in(0)
    bob = await pool.sign_in(1)
    bob_ep = endpoint(pool, bob.endpoint_id)
    async with silent_reader(pool, bob):
        await flood(pool, alice, bob)
        assert bob_ep.queue.dropped_total > 0
        assert pool.metric("poolsim_events_dropped_total") >= bob_ep.queue.dropped_total
        assert not bob_ep.signed_out

        await step(pool, 55)  # the oldest unread event has waited 55 s: not yet
        assert not bob_ep.signed_out
        await step(pool, 6)  # 61 s: the sweep after the 60th second signs bob out
        assert bob_ep.signed_out
        with pytest.raises(Unauthenticated):
            await bob.get_presence([uri(0)])
        await alice.get_presence([uri(1)])  # the sender is still signed in
        assert registration_reasons(pool).get(bob.endpoint_id) == "flow-controlled"
        assert alice.endpoint_id not in registration_reasons(pool)
        labels = {"reason": "flow-controlled"}
        assert pool.metric("poolsim_deregistrations_total", labels) == 1
        assert pool.metric("poolsim_endpoints_active") == 1
        # the server's handler is gone, without waiting for bob to read
        await eventually(lambda: bob_ep.streams == 0, what="the server ended bob's handler")


async def test_stream_of_a_flow_controlled_reader_ends(pool: StandardPool) -> None:
    alice = await pool.sign_in(0)
    bob = await pool.sign_in(1)
    bob_ep = endpoint(pool, bob.endpoint_id)
    async with silent_reader(pool, bob) as call:
        await flood(pool, alice, bob)
        await step(pool, 61)
        assert bob_ep.signed_out
        await eventually(lambda: bob_ep.streams == 0, what="the server ended bob's handler")
        # bob reads again: he gets what the transport had buffered, then the end of the stream
        # (a status, OK or not); the proto says "the stream closes after this event"
        buffered = 0
        try:
            async with asyncio.timeout(STREAM_END_DEADLINE):
                while await call.read() is not grpc.aio.EOF:
                    buffered += 1
        except TimeoutError:
            raise AssertionError(
                f"bob's Events call is still open {STREAM_END_DEADLINE} s after the server "
                f"signed him out (read {buffered} buffered events, then nothing)"
            ) from None
        except grpc.aio.AioRpcError:
            pass  # ended with an error status: fine
        assert call.done()


# --- a reader that reads after its queue overflowed ---


async def test_reader_is_told_how_many_events_it_missed(pool: StandardPool) -> None:
    alice = await pool.sign_in(0)
    bob = await pool.sign_in(1)
    bob_ep = endpoint(pool, bob.endpoint_id)
    conv = await alice.create_conversation([uri(1)])  # bob's 1st event: the invitation
    await bob.accept(conv.conversation_id)
    messages = 80
    for i in range(messages):
        await alice.send_message(conv.conversation_id, f"m{i}")
    queued = 1 + messages
    assert len(bob_ep.queue) == CAPACITY + 1
    assert bob_ep.queue.dropped_total == queued - CAPACITY
    assert pool.metric("poolsim_events_dropped_total") >= queued - CAPACITY

    async with inbox(bob) as box:
        first = await box.next("invitation")
        assert first.invitation.conversation_id == conv.conversation_id
        for seq in range(1, CAPACITY):
            event = await box.next("message")
            assert (event.message.sequence, event.message.body) == (seq, f"m{seq - 1}")
        dropped = await box.next("dropped")
        assert dropped.dropped.count == queued - CAPACITY
        kinds = [e.WhichOneof("kind") for e in box.events]
        assert kinds == ["invitation"] + ["message"] * (CAPACITY - 1) + ["dropped"]
        # the stream goes on after the gap
        await alice.send_message(conv.conversation_id, "after the gap")
        after = await box.next("message")
        assert (after.message.sequence, after.message.body) == (messages + 1, "after the gap")
    assert not bob_ep.signed_out


# --- registration expiry ---


async def test_registration_expires_without_a_stream(pool: StandardPool) -> None:
    bob = await pool.sign_in(1)
    bob_ep = endpoint(pool, bob.endpoint_id)
    await step(pool, 599, 10)
    assert not bob_ep.signed_out  # 600 s is the default expiry
    await step(pool, 2, 1)
    assert bob_ep.signed_out
    with pytest.raises(Unauthenticated):
        await bob.get_presence([uri(1)])
    assert registration_reasons(pool).get(bob.endpoint_id) == "registration-expired"
    labels = {"reason": "registration-expired"}
    assert pool.metric("poolsim_deregistrations_total", labels) == 1


async def test_an_authenticated_call_refreshes_the_registration(pool: StandardPool) -> None:
    bob = await pool.sign_in(1)
    bob_ep = endpoint(pool, bob.endpoint_id)
    await step(pool, 500, 10)
    await bob.get_presence([uri(0)])
    await step(pool, 500, 10)  # 1000 s after sign-in, 500 after the last call
    assert not bob_ep.signed_out
    await bob.get_presence([uri(0)])
    await step(pool, 601, 10)
    with pytest.raises(Unauthenticated):
        await bob.get_presence([uri(0)])
    assert registration_reasons(pool).get(bob.endpoint_id) == "registration-expired"


async def test_an_open_stream_keeps_the_registration(pool: StandardPool) -> None:
    bob = await pool.sign_in(1)
    bob_ep = endpoint(pool, bob.endpoint_id)
    async with inbox(bob):
        await eventually(lambda: bob_ep.streams == 1, what="bob's stream is open")
        for _ in range(70):
            await step(pool, 10, 10)
            # a reader that reads: whatever the idle timers told bob, he has taken it
            await eventually(lambda: len(bob_ep.queue) == 0, what="bob read his events")
        assert not bob_ep.signed_out
        await bob.get_presence([uri(1)])  # the token still works
    assert bob.endpoint_id not in registration_reasons(pool)
    # once the stream is closed, the 600 s start again
    await eventually(lambda: bob_ep.streams == 0, what="bob's stream is closed")
    await step(pool, 599, 10)
    assert not bob_ep.signed_out
    await step(pool, 2, 1)
    assert registration_reasons(pool).get(bob.endpoint_id) == "registration-expired"
