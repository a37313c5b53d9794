"""SPEC section 3: who may start a conversation with whom (DND, Blocked, Offline)."""

from __future__ import annotations

import pytest

from pool.errors import FailedPrecondition, PermissionDenied
from pool.events import ChatMessage, ConversationEscalated, Invitation
from pool.presence import AWAY, BE_RIGHT_BACK, BUSY, DND, OFFLINE, Aggregate
from pool.presence_service import Publication, Source
from pool.privacy import AccessLevel, Reach, reach

from .conftest import ALICE, BOB, CAROL, EXTERNAL, Sim, of_type

L = AccessLevel


@pytest.mark.parametrize(
    ("availability", "level", "verdict"),
    [
        (DND, L.COLLEAGUES, Reach.DO_NOT_DISTURB),
        (DND, L.EXTERNAL, Reach.DO_NOT_DISTURB),
        (DND, L.FRIENDS_AND_FAMILY, Reach.DO_NOT_DISTURB),
        (DND, L.WORKGROUP, Reach.OK),
        (BUSY, L.COLLEAGUES, Reach.OK),
        (AWAY, L.EXTERNAL, Reach.OK),
        (BE_RIGHT_BACK, L.COLLEAGUES, Reach.OK),
        (OFFLINE, L.WORKGROUP, Reach.OFFLINE),
        (BUSY, L.BLOCKED, Reach.BLOCKED),
        (OFFLINE, L.BLOCKED, Reach.BLOCKED),
    ],
)
def test_reach(availability: int, level: AccessLevel, verdict: Reach) -> None:
    assert reach(Aggregate(availability, endpoints=1), level) is verdict


def _bob_in_dnd(sim: Sim) -> None:
    bob = sim.sign_in(BOB)
    sim.engine.publish(bob, Publication(source=Source.USER, availability=DND))


def test_inviting_a_user_in_dnd_fails(sim: Sim) -> None:
    _bob_in_dnd(sim)
    alice = sim.sign_in(ALICE)
    with pytest.raises(FailedPrecondition, match="Do Not Disturb"):
        sim.engine.create_conversation(alice, [BOB], "", ChatMessage("hi"))
    assert sim.engine.immcu.conversations == {}
    assert sim.user(BOB).invitations == set()
    assert sim.drain(sim.user(BOB).endpoints[0]) == []


def test_inviting_a_user_in_dnd_from_another_domain_fails(sim: Sim) -> None:
    _bob_in_dnd(sim)
    ext = sim.sign_in(EXTERNAL)
    with pytest.raises(FailedPrecondition):
        sim.engine.create_conversation(ext, [BOB], "", None)


def test_workgroup_reaches_a_user_in_dnd(sim: Sim) -> None:
    _bob_in_dnd(sim)
    bob = sim.user(BOB).endpoints[0]
    sim.engine.add_contact(bob, ALICE, int(L.WORKGROUP), "")
    alice = sim.sign_in(ALICE)
    conv, seq = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("urgent"))
    assert seq == 1
    [inv] = of_type(sim.drain(bob), Invitation)
    assert (inv.conversation_id, inv.inviter, inv.first_message) == (
        conv.id,
        ALICE,
        ChatMessage("urgent"),
    )


def test_blocked_inviter_is_denied(sim: Sim) -> None:
    bob = sim.sign_in(BOB)
    sim.engine.add_contact(bob, ALICE, int(L.BLOCKED), "")
    alice = sim.sign_in(ALICE)
    with pytest.raises(PermissionDenied):
        sim.engine.create_conversation(alice, [BOB], "", ChatMessage("hi"))
    assert sim.drain(bob) == []


def test_blocked_inviter_is_denied_even_when_workgroup_would_pass_dnd(sim: Sim) -> None:
    _bob_in_dnd(sim)
    bob = sim.user(BOB).endpoints[0]
    sim.engine.add_contact(bob, ALICE, int(L.BLOCKED), "")
    alice = sim.sign_in(ALICE)
    with pytest.raises(PermissionDenied):
        sim.engine.create_conversation(alice, [BOB], "", None)


def test_offline_user_cannot_be_invited(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(FailedPrecondition, match="offline"):
        sim.engine.create_conversation(alice, [BOB], "", ChatMessage("hi"))
    assert sim.engine.immcu.conversations == {}


def test_manual_offline_user_cannot_be_invited(sim: Sim) -> None:
    bob = sim.sign_in(BOB)
    sim.engine.publish(bob, Publication(source=Source.USER, availability=OFFLINE))
    alice = sim.sign_in(ALICE)
    with pytest.raises(FailedPrecondition):
        sim.engine.create_conversation(alice, [BOB], "", None)


def test_one_unreachable_invitee_fails_the_whole_conference(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    with pytest.raises(FailedPrecondition):
        sim.engine.create_conversation(alice, [BOB, CAROL], "", ChatMessage("hi"))
    assert sim.drain(bob) == []
    assert sim.engine.immcu.conversations == {}


def test_failed_escalation_leaves_the_conversation_two_party(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    _carol = sim.sign_in(CAROL)
    sim.engine.publish(_carol, Publication(source=Source.USER, availability=DND))
    conv_id = sim.two_party(alice, bob)
    records_before = len(sim.store.cdrs)
    with pytest.raises(FailedPrecondition):
        sim.engine.invite(alice, conv_id, CAROL)
    conv = sim.engine.immcu.conversations[conv_id]
    assert conv.conference_uri == ""
    assert not conv.is_conference
    assert of_type(sim.drain(alice), ConversationEscalated) == []
    assert of_type(sim.drain(bob), ConversationEscalated) == []
    assert len(sim.store.cdrs) == records_before
    _, seq = sim.engine.send_message(bob, conv_id, "still here", "text/plain")
    assert seq == 2
