"""SPEC section 4: two-party IM, escalation, conferences, the IMMCU buffer, timeouts."""

from __future__ import annotations

import pytest

from pool.errors import FailedPrecondition, NotFound, PermissionDenied, ResourceExhausted
from pool.events import (
    ChatMessage,
    ConversationEnded,
    ConversationEscalated,
    Event,
    Invitation,
    MessageReceived,
    ParticipantJoined,
    ParticipantLeft,
    TypingChanged,
)
from pool.registrar import Endpoint

from .conftest import ALICE, BOB, CAROL, DAVE, ERIN, Sim, of_type


def bodies(events: list[Event]) -> list[tuple[int, str]]:
    return [(e.sequence, e.body) for e in events if isinstance(e, MessageReceived)]


def conference(sim: Sim) -> tuple[Endpoint, Endpoint, Endpoint, str]:
    """Alice and Bob in a two-party conversation escalated to Carol, who joined; drained."""
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv_id = sim.two_party(alice, bob)
    sim.engine.invite(alice, conv_id, CAROL)
    sim.engine.accept(carol, conv_id)
    for ep in (alice, bob, carol):
        sim.drain(ep)
    return alice, bob, carol, conv_id


# --- two-party ---


def test_invitation_carries_the_first_message(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    conv, seq = sim.engine.create_conversation(alice, [BOB], "lunch?", ChatMessage("noon?"))
    assert seq == 1
    assert sim.drain(bob) == [
        Invitation(
            conv.id,
            ALICE,
            ChatMessage("noon?", "text/plain"),
            "lunch?",
            "",
            (ALICE,),
            sim.clock.now(),
        )
    ]
    assert sim.drain(alice) == []
    assert conv.conference_uri == ""


def test_invitation_reaches_every_endpoint_of_the_invitee(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob_pc, bob_phone = sim.sign_in(BOB, "pc"), sim.sign_in(BOB, "phone")
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("hi"))
    assert len(of_type(sim.drain(bob_pc), Invitation)) == 1
    assert len(of_type(sim.drain(bob_phone), Invitation)) == 1
    sim.engine.accept(bob_phone, conv.id)
    assert sim.drain(bob_pc) == [
        ConversationEnded(conv.id, "accepted-on-another-endpoint", sim.clock.now())
    ]
    with pytest.raises(PermissionDenied):
        sim.engine.send_message(bob_pc, conv.id, "from pc", "text/plain")


def test_accept_tells_the_inviter(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("hi"))
    sim.clock.advance(3)
    sim.engine.accept(bob, conv.id)
    assert sim.drain(alice) == [ParticipantJoined(conv.id, BOB, sim.clock.now())]
    assert set(conv.uris()) == {ALICE, BOB}
    with pytest.raises(FailedPrecondition):
        sim.engine.accept(bob, conv.id)


def test_messages_sent_while_invited_arrive_on_accept(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("one"))
    sim.engine.send_message(alice, conv.id, "two", "text/plain")
    sim.engine.send_message(alice, conv.id, "three", "text/plain")
    sim.drain(bob)
    sim.engine.accept(bob, conv.id)
    assert bodies(sim.drain(bob)) == [(2, "two"), (3, "three")]


def test_decline_ends_the_conversation(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("hi"))
    sim.drain(bob)
    sim.engine.decline(bob, conv.id)
    now = sim.clock.now()
    assert sim.drain(alice) == [
        ParticipantLeft(conv.id, BOB, "declined", now),
        ConversationEnded(conv.id, "declined", now),
    ]
    assert sim.drain(bob) == [ConversationEnded(conv.id, "declined", now)]
    assert conv.id not in sim.engine.immcu.conversations
    assert sim.user(BOB).invitations == set()
    assert sim.user(ALICE).conversations == 0
    with pytest.raises(NotFound):
        sim.engine.send_message(alice, conv.id, "hello?", "text/plain")


def test_decline_without_invitation_is_denied(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv_id = sim.two_party(alice, bob)
    with pytest.raises(PermissionDenied):
        sim.engine.decline(carol, conv_id)
    with pytest.raises(PermissionDenied):
        sim.engine.accept(carol, conv_id)


def test_messages_get_sequences_and_reach_the_other_participant_only(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    conv, seq = sim.engine.create_conversation(alice, [BOB], "", None)
    assert seq == 0
    sim.engine.accept(bob, conv.id)
    sim.drain(alice)
    sim.drain(bob)
    results = [sim.engine.send_message(alice, conv.id, f"m{i}", "text/plain") for i in (1, 2, 3)]
    assert results == [(f"{conv.id}:1", 1), (f"{conv.id}:2", 2), (f"{conv.id}:3", 3)]
    now = sim.clock.now()
    assert sim.drain(bob) == [
        MessageReceived(conv.id, ALICE, i, f"{conv.id}:{i}", f"m{i}", "text/plain", now)
        for i in (1, 2, 3)
    ]
    assert sim.drain(alice) == []
    _, seq = sim.engine.send_message(bob, conv.id, "reply", "text/html")
    assert seq == 4
    assert bodies(sim.drain(alice)) == [(4, "reply")]
    assert sim.drain(bob) == []


def test_typing_notifications_go_to_the_others(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    conv_id = sim.two_party(alice, bob)
    sim.engine.set_typing(alice, conv_id, True)
    sim.engine.set_typing(alice, conv_id, False)
    now = sim.clock.now()
    assert sim.drain(bob) == [
        TypingChanged(conv_id, ALICE, True, now),
        TypingChanged(conv_id, ALICE, False, now),
    ]
    assert sim.drain(alice) == []


def test_non_participant_cannot_send_or_type(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv_id = sim.two_party(alice, bob)
    with pytest.raises(PermissionDenied):
        sim.engine.send_message(carol, conv_id, "let me in", "text/plain")
    with pytest.raises(PermissionDenied):
        sim.engine.set_typing(carol, conv_id, True)
    with pytest.raises(PermissionDenied):
        sim.engine.invite(carol, conv_id, DAVE)
    with pytest.raises(PermissionDenied):
        sim.engine.leave(carol, conv_id)
    assert sim.drain(alice) == []
    assert sim.drain(bob) == []
    assert sim.engine.immcu.conversations[conv_id].sequence == 1


def test_other_endpoint_of_a_participant_cannot_send(sim: Sim) -> None:
    alice = sim.sign_in(ALICE, "pc")
    alice_phone = sim.sign_in(ALICE, "phone")
    bob = sim.sign_in(BOB)
    conv_id = sim.two_party(alice, bob)
    with pytest.raises(PermissionDenied):
        sim.engine.send_message(alice_phone, conv_id, "from phone", "text/plain")


def test_unknown_conversation_is_not_found(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(NotFound):
        sim.engine.send_message(alice, "c-0000000000000000", "hi", "text/plain")


# --- escalation and conferences ---


def test_third_invite_escalates(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    sim.sign_in(DAVE)
    conv_id = sim.two_party(alice, bob)
    sim.clock.advance(5)
    conv, escalated = sim.engine.invite(alice, conv_id, CAROL)
    assert escalated
    assert conv.id == conv_id
    assert conv.is_conference
    conf_uri = conv.conference_uri
    assert conf_uri.startswith(ALICE + ";gruu;opaque=app:conf:chat:id:")
    now = sim.clock.now()
    assert sim.drain(alice) == [ConversationEscalated(conv_id, conf_uri, now)]
    assert sim.drain(bob) == [ConversationEscalated(conv_id, conf_uri, now)]
    [inv] = sim.drain(carol)
    assert inv == Invitation(conv_id, ALICE, None, "", conf_uri, (ALICE, BOB), now)
    sim.engine.accept(carol, conv_id)
    assert sim.drain(alice) == [ParticipantJoined(conv_id, CAROL, now)]
    assert sim.drain(bob) == [ParticipantJoined(conv_id, CAROL, now)]
    _, seq = sim.engine.send_message(bob, conv_id, "welcome", "text/plain")
    assert seq == 2
    assert bodies(sim.drain(alice)) == [(2, "welcome")]
    # carol joined 5 s after the first message: she gets it from the IMMCU buffer
    assert bodies(sim.drain(carol)) == [(1, "hello"), (2, "welcome")]
    assert sim.drain(bob) == []
    _, again = sim.engine.invite(bob, conv_id, DAVE)
    assert not again
    assert conv.conference_uri == conf_uri
    assert of_type(sim.drain(alice), ConversationEscalated) == []


def test_inviting_a_participant_again_fails(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    conv_id = sim.two_party(alice, bob)
    with pytest.raises(FailedPrecondition):
        sim.engine.invite(alice, conv_id, BOB)
    assert not sim.engine.immcu.conversations[conv_id].is_conference


def test_several_invitees_start_a_conference(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL, BOB], "plan", ChatMessage("hi"))
    assert conv.is_conference
    for ep in (bob, carol):
        [inv] = sim.drain(ep)
        assert isinstance(inv, Invitation)
        assert (inv.conference_uri, inv.participants) == (conv.conference_uri, (ALICE,))
    assert set(conv.pending) == {sim.user(BOB).id, sim.user(CAROL).id}


def test_250_participants_at_most(sim: Sim) -> None:
    uris = sim.provision("big", 251)
    for uri in uris:
        sim.sign_in(uri)
    alice = sim.sign_in(ALICE)
    with pytest.raises(ResourceExhausted, match="250"):
        sim.engine.create_conversation(alice, uris[:250], "", None)
    assert sim.engine.immcu.conversations == {}
    conv, _ = sim.engine.create_conversation(alice, uris[:249], "", None)
    assert len(conv.participants) + len(conv.pending) == 250
    with pytest.raises(ResourceExhausted, match="250"):
        sim.engine.invite(alice, conv.id, uris[250])
    assert sim.user(uris[250]).invitations == set()


def test_leave_notifies_and_the_conference_goes_on_with_two(sim: Sim) -> None:
    alice, bob, carol, conv_id = conference(sim)
    sim.engine.leave(carol, conv_id)
    now = sim.clock.now()
    assert sim.drain(alice) == [ParticipantLeft(conv_id, CAROL, "left", now)]
    assert sim.drain(bob) == [ParticipantLeft(conv_id, CAROL, "left", now)]
    assert sim.drain(carol) == []
    _, seq = sim.engine.send_message(alice, conv_id, "just us", "text/plain")
    assert bodies(sim.drain(bob)) == [(seq, "just us")]
    assert sim.drain(carol) == []
    with pytest.raises(PermissionDenied):
        sim.engine.send_message(carol, conv_id, "back?", "text/plain")


def test_conversation_ends_when_fewer_than_two_remain(sim: Sim) -> None:
    alice, bob, carol, conv_id = conference(sim)
    sim.engine.leave(carol, conv_id)
    sim.drain(alice)
    sim.engine.leave(bob, conv_id)
    now = sim.clock.now()
    assert sim.drain(alice) == [
        ParticipantLeft(conv_id, BOB, "left", now),
        ConversationEnded(conv_id, "left", now),
    ]
    assert conv_id not in sim.engine.immcu.conversations
    assert conv_id not in alice.conversations
    assert sim.user(ALICE).conversations == 0
    with pytest.raises(NotFound):
        sim.engine.send_message(alice, conv_id, "anyone?", "text/plain")
    with pytest.raises(NotFound):
        sim.engine.invite(alice, conv_id, DAVE)


def test_two_party_leave_ends_the_conversation(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    conv_id = sim.two_party(alice, bob)
    sim.engine.leave(bob, conv_id)
    now = sim.clock.now()
    assert sim.drain(alice) == [
        ParticipantLeft(conv_id, BOB, "left", now),
        ConversationEnded(conv_id, "left", now),
    ]
    assert sim.drain(bob) == []
    with pytest.raises(NotFound):
        sim.engine.leave(alice, conv_id)


def test_inviter_leaving_before_answer_cancels_the_invitation(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("hi"))
    sim.drain(bob)
    sim.engine.leave(alice, conv.id)
    assert sim.drain(bob) == [ConversationEnded(conv.id, "cancelled", sim.clock.now())]
    assert sim.user(BOB).invitations == set()
    with pytest.raises(NotFound):
        sim.engine.accept(bob, conv.id)


def test_sign_out_leaves_conversations(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    conv_id = sim.two_party(alice, bob)
    sim.engine.sign_out(bob)
    now = sim.clock.now()
    assert sim.drain(alice) == [
        ParticipantLeft(conv_id, BOB, "client-initiated", now),
        ConversationEnded(conv_id, "left", now),
    ]


def test_ad_hoc_conference_ended_by_leaving_says_left(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", ChatMessage("hi"))
    sim.engine.accept(bob, conv.id)
    sim.engine.accept(carol, conv.id)
    sim.engine.leave(bob, conv.id)
    sim.engine.leave(carol, conv.id)
    [ended] = of_type(sim.drain(alice), ConversationEnded)
    assert ended.reason == "left"


# --- the IMMCU buffer (50 messages, 40 s) ---


def test_joiner_within_40_s_gets_buffered_messages_later_joiner_does_not(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    carol, dave = sim.sign_in(CAROL), sim.sign_in(DAVE)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL, DAVE], "", ChatMessage("m1"))
    sim.engine.send_message(alice, conv.id, "m2", "text/plain")
    sim.engine.send_message(alice, conv.id, "m3", "text/plain")
    for ep in (bob, carol, dave):
        [inv] = sim.drain(ep)
        assert isinstance(inv, Invitation)
        assert inv.first_message == ChatMessage("m1")
    sim.advance(10)
    sim.engine.accept(bob, conv.id)
    assert bodies(sim.drain(bob)) == [(2, "m2"), (3, "m3")]
    sim.advance(30)  # 40 s after the first message: still inside the window
    sim.engine.accept(carol, conv.id)
    assert bodies(sim.drain(carol)) == [(2, "m2"), (3, "m3")]
    sim.advance(1)  # 41 s
    sim.engine.accept(dave, conv.id)
    assert bodies(sim.drain(dave)) == []


def test_buffer_keeps_at_most_50_messages(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", None)
    sim.engine.accept(bob, conv.id)
    for i in range(1, 61):
        sim.engine.send_message(alice if i % 2 else bob, conv.id, f"m{i}", "text/plain")
    assert len(conv.buffer) == 50
    sim.advance(20)
    sim.engine.accept(carol, conv.id)
    got = bodies(sim.drain(carol))
    assert got == [(i, f"m{i}") for i in range(1, 51)]


def test_escalation_joiner_within_40_s_sees_the_two_party_messages(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv_id = sim.two_party(alice, bob, first="m1")
    sim.engine.send_message(bob, conv_id, "m2", "text/plain")
    sim.advance(20)
    sim.engine.invite(alice, conv_id, CAROL)
    sim.engine.accept(carol, conv_id)
    assert bodies(sim.drain(carol)) == [(1, "m1"), (2, "m2")]


def test_escalation_joiner_after_40_s_sees_nothing_old(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv_id = sim.two_party(alice, bob, first="m1")
    sim.advance(41)
    sim.engine.invite(alice, conv_id, CAROL)
    sim.engine.accept(carol, conv_id)
    assert bodies(sim.drain(carol)) == []


# --- invitation timeout ---


def test_unanswered_two_party_invitation_ends_with_no_answer(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("hi"))
    sim.drain(bob)
    sim.advance(119)
    assert conv.id in sim.engine.immcu.conversations
    assert sim.drain(alice) == []
    sim.advance(1)
    now = sim.clock.now()
    assert sim.drain(alice) == [
        ParticipantLeft(conv.id, BOB, "no-answer", now),
        ConversationEnded(conv.id, "no-answer", now),
    ]
    assert sim.drain(bob) == [ConversationEnded(conv.id, "no-answer", now)]
    assert conv.id not in sim.engine.immcu.conversations
    assert sim.user(BOB).invitations == set()
    with pytest.raises(NotFound):
        sim.engine.accept(bob, conv.id)


def test_accepted_invitation_does_not_time_out(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    conv_id = sim.two_party(alice, bob)
    sim.advance(121)
    assert conv_id in sim.engine.immcu.conversations
    assert sim.drain(alice) == []


def test_unanswered_conference_invitee_drops_out(sim: Sim) -> None:
    alice, bob, carol, erin = (sim.sign_in(u) for u in (ALICE, BOB, CAROL, ERIN))
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL, ERIN], "", None)
    sim.engine.accept(bob, conv.id)
    sim.engine.accept(carol, conv.id)
    sim.drain(alice)
    sim.advance(120)
    assert sim.drain(alice) == [ParticipantLeft(conv.id, ERIN, "no-answer", sim.clock.now())]
    assert conv.id in sim.engine.immcu.conversations
    assert sim.drain(erin)[-1] == ConversationEnded(conv.id, "no-answer", sim.clock.now())
