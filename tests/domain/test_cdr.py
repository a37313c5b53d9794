"""SPEC section 4: call detail records written to the store (MemoryStore.cdrs)."""

from __future__ import annotations

from pool.cdr import (
    CdrRecord,
    ConferenceJoinRecord,
    ConferenceMessageCountRecord,
    ConferenceRecord,
    ImSessionRecord,
    RegistrationRecord,
)
from pool.events import ChatMessage, SignedOut

from .conftest import ALICE, BOB, CAROL, Sim


def records(sim: Sim) -> list[CdrRecord]:
    return [r.record for r in sim.store.cdrs]


def test_two_party_session_record(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    t0 = sim.clock.now()
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("m1"))
    sim.clock.advance(4)
    sim.engine.accept(bob, conv.id)
    sim.engine.send_message(bob, conv.id, "m2", "text/plain")
    sim.engine.send_message(bob, conv.id, "m3", "text/plain")
    sim.engine.send_message(bob, conv.id, "m4", "text/plain")
    sim.engine.send_message(alice, conv.id, "m5", "text/plain")
    assert records(sim) == []  # written once, when complete
    sim.clock.advance(30)
    sim.engine.leave(alice, conv.id)
    assert records(sim) == [
        ImSessionRecord(
            session_id=conv.id,
            from_uri=ALICE,
            from_endpoint=alice.id,
            to_uri=BOB,
            to_endpoint=bob.id,
            invite_time=t0,
            response_time=t0 + 4,
            response_code=200,
            end_time=t0 + 34,
            from_message_count=2,
            to_message_count=3,
            media_type="IM",
            escalated_to="",
        )
    ]
    assert sim.store.cdrs[0].time == t0 + 34
    assert [r.id for r in sim.engine.call_detail_records(t0 + 34)] == [1]
    assert list(sim.engine.call_detail_records(t0 + 35)) == []


def test_declined_session_record_is_603(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    t0 = sim.clock.now()
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("m1"))
    sim.clock.advance(2)
    sim.engine.decline(bob, conv.id)
    assert records(sim) == [
        ImSessionRecord(
            session_id=conv.id,
            from_uri=ALICE,
            from_endpoint=alice.id,
            to_uri=BOB,
            to_endpoint="",
            invite_time=t0,
            response_time=t0 + 2,
            response_code=603,
            end_time=t0 + 2,
            from_message_count=1,
            to_message_count=0,
        )
    ]


def test_unanswered_session_record_is_408(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    sim.sign_in(BOB)
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("m1"))
    sim.advance(120)
    [rec] = records(sim)
    assert isinstance(rec, ImSessionRecord)
    assert (rec.session_id, rec.response_code, rec.to_message_count) == (conv.id, 408, 0)


def test_escalated_conference_records(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    t0 = sim.clock.now()
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("m1"))
    sim.engine.accept(bob, conv.id)
    sim.engine.send_message(bob, conv.id, "m2", "text/plain")
    sim.clock.advance(10)
    sim.engine.invite(alice, conv.id, CAROL)
    conf = conv.conference_uri
    assert records(sim) == [
        ImSessionRecord(
            session_id=conv.id,
            from_uri=ALICE,
            from_endpoint=alice.id,
            to_uri=BOB,
            to_endpoint=bob.id,
            invite_time=t0,
            response_time=t0,
            response_code=200,
            end_time=t0 + 10,
            from_message_count=1,
            to_message_count=1,
            escalated_to=conf,
        )
    ]
    sim.clock.advance(5)
    sim.engine.accept(carol, conv.id)
    sim.engine.send_message(alice, conv.id, "m3", "text/plain")
    sim.engine.send_message(alice, conv.id, "m4", "text/plain")
    sim.engine.send_message(carol, conv.id, "m5", "text/plain")
    sim.clock.advance(5)
    sim.engine.leave(bob, conv.id)
    sim.clock.advance(5)
    sim.engine.leave(carol, conv.id)
    rest = records(sim)[1:]
    assert rest[:4] == [
        ConferenceJoinRecord(conf, BOB, bob.id, t0 + 10, t0 + 20),
        ConferenceMessageCountRecord(conf, BOB, 0),
        ConferenceJoinRecord(conf, CAROL, carol.id, t0 + 15, t0 + 25),
        ConferenceMessageCountRecord(conf, CAROL, 1),
    ]
    assert rest[4:6] == [
        ConferenceJoinRecord(conf, ALICE, alice.id, t0 + 10, t0 + 25),
        ConferenceMessageCountRecord(conf, ALICE, 2),
    ]
    [conference] = [r for r in rest if isinstance(r, ConferenceRecord)]
    assert (
        conference.conference_uri,
        conference.end_time,
        conference.organizer,
        conference.pool,
    ) == (conf, t0 + 25, ALICE, "pool01")
    assert len(rest) == 7
    # one session record only: the two-party part was recorded at escalation
    assert len([r for r in records(sim) if isinstance(r, ImSessionRecord)]) == 1


def test_escalated_conference_starts_at_escalation(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv_id = sim.two_party(alice, bob)
    sim.clock.advance(10)
    escalated_at = sim.clock.now()
    sim.engine.invite(alice, conv_id, CAROL)
    sim.engine.accept(carol, conv_id)
    sim.engine.leave(bob, conv_id)
    sim.engine.leave(carol, conv_id)
    [conference] = [r for r in records(sim) if isinstance(r, ConferenceRecord)]
    assert conference.start_time == escalated_at


def test_ad_hoc_conference_has_no_session_record(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    t0 = sim.clock.now()
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", ChatMessage("m1"))
    sim.engine.accept(bob, conv.id)
    sim.engine.accept(carol, conv.id)
    sim.clock.advance(7)
    for ep in (bob, carol):
        sim.engine.leave(ep, conv.id)
    recs = records(sim)
    assert not any(isinstance(r, ImSessionRecord) for r in recs)
    assert recs[-1] == ConferenceRecord(conv.conference_uri, t0, t0 + 7, ALICE, "pool01")
    counts = {
        r.user_uri: r.message_count for r in recs if isinstance(r, ConferenceMessageCountRecord)
    }
    assert counts == {ALICE: 1, BOB: 0, CAROL: 0}


def test_registration_record_client_initiated(sim: Sim) -> None:
    t0 = sim.clock.now()
    ep = sim.sign_in(ALICE, "Lync 2013 desktop")
    sim.clock.advance(42)
    sim.engine.sign_out(ep)
    assert records(sim) == [
        RegistrationRecord(
            ALICE, ep.id, "Lync 2013 desktop", "fe1", True, t0, t0 + 42, "client-initiated"
        )
    ]
    assert sim.drain(ep) == [SignedOut("client-initiated", t0 + 42)]
    sim.engine.sign_out(ep)  # a second sign-out writes nothing
    assert len(records(sim)) == 1


def test_registration_record_expired_after_600_s(sim: Sim) -> None:
    t0 = sim.clock.now()
    ep = sim.sign_in(ALICE)
    sim.advance(599)
    assert not ep.signed_out
    assert records(sim) == []
    sim.advance(1)
    assert ep.signed_out
    assert records(sim) == [
        RegistrationRecord(
            ALICE, ep.id, "desktop", "fe1", True, t0, t0 + 600, "registration-expired"
        )
    ]
    assert sim.user(ALICE).endpoints == []
    assert sim.user(ALICE).current.availability == 18500


def test_refresh_postpones_expiry(sim: Sim) -> None:
    ep = sim.sign_in(ALICE)
    sim.advance(500)
    assert sim.engine.authenticate(ep.token) is ep
    sim.advance(599)
    assert not ep.signed_out
    sim.advance(1)
    assert ep.signed_out
    [rec] = records(sim)
    assert isinstance(rec, RegistrationRecord)
    assert rec.deregister_reason == "registration-expired"


def test_open_stream_prevents_expiry_until_closed(sim: Sim) -> None:
    ep = sim.sign_in(ALICE)
    sim.engine.open_stream(ep)
    sim.advance(1200)
    assert not ep.signed_out
    sim.engine.close_stream(ep)
    sim.advance(599)
    assert not ep.signed_out
    sim.advance(1)
    assert ep.signed_out
    [rec] = records(sim)
    assert isinstance(rec, RegistrationRecord)
    assert rec.deregister_reason == "registration-expired"


def test_registration_record_flow_controlled(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    sim.engine.open_stream(alice)
    t0 = sim.clock.now()
    sim.engine.create_conversation(bob, [ALICE], "", ChatMessage("unread"))
    sim.advance(65)
    assert alice.signed_out
    regs = [r for r in records(sim) if isinstance(r, RegistrationRecord)]
    assert regs == [
        RegistrationRecord(
            ALICE, alice.id, "desktop", "fe1", True, t0, sim.clock.now(), "flow-controlled"
        )
    ]
