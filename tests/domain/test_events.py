"""The bounded event queue (pool/events.py) and flow control through the engine."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from pool.events import (
    ChatMessage,
    EventQueue,
    EventsDropped,
    MessageReceived,
    SignedOut,
    TypingChanged,
)

from .conftest import ALICE, BOB, Sim, SimFactory, of_type


def ev(i: int) -> TypingChanged:
    return TypingChanged("c-1", f"sip:u{i}@contoso.com", True, float(i))


# --- EventQueue directly ---


def test_fifo_within_capacity() -> None:
    q = EventQueue(3)
    assert [q.push(ev(i), 0.0) for i in range(3)] == [True, True, True]
    assert q.drain(10, 1.0) == [ev(0), ev(1), ev(2)]
    assert len(q) == 0
    assert q.pending_since is None


def test_overflow_yields_one_events_dropped_with_the_count() -> None:
    q = EventQueue(3)
    results = [q.push(ev(i), 0.0) for i in range(8)]
    assert results == [True, True, True, False, False, False, False, False]
    assert len(q) == 4
    assert q.dropped_total == 5
    assert q.drain(100, 1.0) == [ev(0), ev(1), ev(2), EventsDropped(5, 3.0)]


def test_events_dropped_sits_where_events_went_missing() -> None:
    q = EventQueue(3)
    for i in range(5):  # 0, 1, 2 queued; 3, 4 dropped
        q.push(ev(i), 0.0)
    assert q.drain(2, 1.0) == [ev(0), ev(1)]
    assert q.push(ev(5), 1.0)  # room again: queued after the marker
    assert q.drain(100, 2.0) == [ev(2), EventsDropped(2, 3.0), ev(5)]


def test_two_overflows_give_two_markers_in_place() -> None:
    q = EventQueue(2)
    for i in range(3):  # 0, 1 queued; 2 dropped
        q.push(ev(i), 0.0)
    assert q.drain(2, 1.0) == [ev(0), ev(1)]
    assert q.push(ev(3), 1.0)  # queued after the marker
    assert not q.push(ev(4), 1.0)  # dropped: a new marker
    assert not q.push(ev(5), 1.0)  # dropped: same marker
    assert len(q) == 3
    assert q.drain(100, 2.0) == [EventsDropped(1, 2.0), ev(3), EventsDropped(2, 4.0)]
    assert q.dropped_total == 3


def test_queue_drains_plainly_again_once_its_markers_are_out() -> None:
    q = EventQueue(3)
    for i in range(5):  # 0, 1, 2 queued; 3, 4 dropped
        q.push(ev(i), 0.0)
    assert q.drain(2, 1.0) == [ev(0), ev(1)]
    assert q.push(ev(5), 1.0)  # queued after the marker
    assert q.drain(1, 2.0) == [ev(2)]
    assert q.pending_since == 2.0
    assert q.drain(100, 3.0) == [EventsDropped(2, 3.0), ev(5)]
    assert [q.push(ev(i), 4.0) for i in (6, 7)] == [True, True]
    assert q.drain(100, 5.0) == [ev(6), ev(7)]
    assert q.pending_since is None
    assert len(q) == 0


def test_events_keep_dataclass_behaviour_with_their_faster_init() -> None:
    msg = MessageReceived("c-1", "sip:a@contoso.com", 1, "c-1:1", "hi", "text/plain", 1.0)
    assert msg == MessageReceived(
        conversation_id="c-1",
        sender="sip:a@contoso.com",
        sequence=1,
        message_id="c-1:1",
        body="hi",
        content_type="text/plain",
        at=1.0,
    )
    assert ChatMessage("hi") == ChatMessage("hi", "text/plain")
    assert hash(ChatMessage("hi")) == hash(ChatMessage(body="hi"))
    assert dataclasses.replace(msg, body="yo").body == "yo"
    assert pickle.loads(pickle.dumps(msg)) == msg
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.body = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ChatMessage()  # type: ignore[call-arg]


def test_memory_is_bounded_by_capacity_plus_one() -> None:
    q = EventQueue(10)
    for i in range(10_000):
        q.push(ev(i), 0.0)
        assert len(q) <= 11
    drained = q.drain(1000, 1.0)
    assert drained[-1] == EventsDropped(9_990, 10.0)
    assert len(drained) == 11
    for i in range(5_000):  # partly drained and refilled, it stays bounded
        q.push(ev(i), 2.0)
        if i % 7 == 0:
            q.drain(3, 2.0)
        assert len(q) <= 11


def test_drain_respects_the_limit_and_pending_since() -> None:
    q = EventQueue(10)
    q.push(ev(0), 5.0)
    q.push(ev(1), 6.0)
    assert q.pending_since == 5.0
    assert q.drain(1, 7.0) == [ev(0)]
    assert q.pending_since == 7.0
    assert q.drain(1, 8.0) == [ev(1)]
    assert q.pending_since is None


def test_closed_queue_refuses_events_and_keeps_what_is_queued() -> None:
    q = EventQueue(3)
    q.push(ev(0), 0.0)
    q.close("client-initiated")
    assert (q.closed, q.close_reason, q.hard_close) == (True, "client-initiated", False)
    assert q.push(ev(1), 0.0) is False
    assert q.dropped_total == 0
    assert q.drain(10, 1.0) == [ev(0)]


def test_waker_is_called_on_push_and_close() -> None:
    calls: list[int] = []
    q = EventQueue(1)
    q.waker = lambda: calls.append(len(q))
    q.push(ev(0), 0.0)
    q.push(ev(1), 0.0)  # dropped: nothing new to read, no wake-up
    q.close("flow-controlled", hard=True)
    assert calls == [1, 2]
    assert q.hard_close


# --- through the engine ---


def test_engine_queue_overflow(make_sim: SimFactory) -> None:
    sim = make_sim(event_queue_capacity=10)
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    conv_id = sim.two_party(alice, bob)
    for i in range(2, 52):
        sim.engine.send_message(alice, conv_id, f"m{i}", "text/plain")
    assert len(bob.queue) == 11
    events = sim.drain(bob)
    assert [e.sequence for e in of_type(events, MessageReceived)] == list(range(2, 12))
    assert events[-1] == EventsDropped(40, sim.clock.now())
    assert len(events) == 11


def test_unread_open_stream_is_signed_out_after_60_s(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    sim.engine.open_stream(alice)
    conv_id = sim.two_party(bob, alice)
    sim.engine.send_message(bob, conv_id, "are you there?", "text/plain")
    sim.engine.send_message(alice, conv_id, "sending, not reading", "text/plain")
    sim.advance(55)
    assert not alice.signed_out
    sim.advance(10)
    assert alice.signed_out
    assert alice.queue.closed
    assert (alice.queue.close_reason, alice.queue.hard_close) == ("flow-controlled", True)
    assert of_type(sim.drain(alice), SignedOut) == [SignedOut("flow-controlled", sim.clock.now())]
    assert alice not in sim.user(ALICE).endpoints
    assert not bob.signed_out  # bob did not read either, but he never opened a stream


def test_reading_keeps_an_open_stream_alive(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    sim.engine.open_stream(alice)
    conv_id = sim.two_party(bob, alice)
    for _ in range(12):
        sim.engine.send_message(bob, conv_id, "ping", "text/plain")
        sim.advance(30)
        assert len(sim.drain(alice)) >= 1
    assert not alice.signed_out


def test_empty_queue_is_not_flow_controlled(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    sim.engine.open_stream(alice)
    sim.advance(3600)
    assert not alice.signed_out


def test_first_message_is_delivered_in_the_invitation(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    sim.engine.create_conversation(alice, [BOB], "", ChatMessage("hi"))
    assert len(bob.queue) == 1
    assert bob.queue.pending_since == sim.clock.monotonic()
