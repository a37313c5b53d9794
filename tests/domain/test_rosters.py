"""Conference rosters (SPEC section 2: persistent data): what the store holds as a conference's
membership changes, and a conference restored from its roster on a new host."""

from __future__ import annotations

import pytest

from pool.clock import FakeClock
from pool.config import EngineConfig
from pool.engine import Engine
from pool.events import (
    ChatMessage,
    ConversationEnded,
    EventQueue,
    Invitation,
    MessageReceived,
    ParticipantLeft,
)
from pool.immcu import group_of
from pool.registrar import Endpoint
from pool.store import ConferenceRow, MemoryStore

from .conftest import ALICE, BOB, CAROL, DAVE, Sim, of_type


def ids(sim: Sim, *uris: str) -> tuple[int, ...]:
    return tuple(sorted(sim.user(u).id for u in uris))


def roster(sim: Sim, conversation_id: str) -> ConferenceRow | None:
    return sim.store.conferences.get(conversation_id)


@pytest.mark.parametrize(
    ("conversation_id", "group"),
    [("c-g0-00ff", 0), ("c-g17-ab", 17), ("c-404", None), ("", None), ("c-gx-1", None)],
)
def test_group_of(conversation_id: str, group: int | None) -> None:
    assert group_of(conversation_id) == group


def test_ids_name_the_organizers_group(sim: Sim) -> None:
    alice, _ = sim.sign_in(ALICE), sim.sign_in(BOB)
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", None)
    assert group_of(conv.id) == sim.user(ALICE).routing_group


def test_two_party_has_no_roster_until_escalated(sim: Sim) -> None:
    alice, bob, _ = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv_id = sim.two_party(alice, bob)
    assert sim.store.conferences == {}
    sim.engine.invite(alice, conv_id, CAROL)
    row = roster(sim, conv_id)
    assert row is not None
    assert row.members == ids(sim, ALICE, BOB, CAROL)
    assert row.organizer_id == sim.user(ALICE).id
    assert row.conference_uri == sim.engine.immcu.conversations[conv_id].conference_uri


def test_roster_follows_joins_leaves_refusals_and_the_end(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    dave = sim.sign_in(DAVE)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL, DAVE], "plan", None)
    row = roster(sim, conv.id)
    assert row is not None
    assert row.subject == "plan"
    assert row.members == ids(sim, ALICE, BOB, CAROL, DAVE)
    sim.engine.accept(bob, conv.id)
    sim.engine.accept(carol, conv.id)
    assert roster(sim, conv.id) == row  # joining changes nobody's membership
    sim.engine.decline(dave, conv.id)
    assert roster(sim, conv.id).members == ids(sim, ALICE, BOB, CAROL)  # type: ignore[union-attr]
    sim.engine.leave(alice, conv.id)
    assert roster(sim, conv.id).members == ids(sim, BOB, CAROL)  # type: ignore[union-attr]
    sim.engine.leave(bob, conv.id)
    assert roster(sim, conv.id) is None
    assert conv.id not in sim.engine.immcu.conversations


def test_unanswered_invitation_leaves_the_roster(sim: Sim) -> None:
    alice, bob, _ = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", None)
    sim.engine.accept(bob, conv.id)
    sim.advance(sim.engine.config.timers.invitation_timeout + 1)
    assert roster(sim, conv.id).members == ids(sim, ALICE, BOB)  # type: ignore[union-attr]


def stand_in_for(sim: Sim, uri: str) -> Endpoint:
    """The organizer's stand-in endpoint on a new host (their own session may be gone)."""
    user = sim.user(uri)
    return Endpoint("stand-in", user, "remote", "", 0.0, float("inf"), EventQueue(1), 0.0)


def hand_over_and_restore(sim: Sim, conversation_id: str, row: ConferenceRow | None = None) -> None:
    """What a failover does to the conference: the old host forgets it, a new host (here the
    same engine) restores it from the roster (``row``: as the new host's replica has it)."""
    row = row or roster(sim, conversation_id)
    assert row is not None
    group = group_of(conversation_id)
    assert group is not None
    handed = sim.engine.immcu.hand_over(group, "host-changed")
    assert [c.id for c in handed] == [conversation_id]
    stand_in = stand_in_for(sim, ALICE)
    members = [sim.engine.directory.by_id(uid) for uid in row.members]
    sim.engine.immcu.restore(row, stand_in, members)


def test_restored_conference_invites_everyone_back(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "plan", None)
    sim.engine.accept(bob, conv.id)
    sim.engine.accept(carol, conv.id)
    sim.engine.send_message(alice, conv.id, "before", "text/plain")
    for ep in (alice, bob, carol):
        sim.drain(ep)
    hand_over_and_restore(sim, conv.id)
    for ep in (alice, bob, carol):
        events = sim.drain(ep)
        assert events[0] == ConversationEnded(conv.id, "host-changed", sim.clock.now())
        (invitation,) = of_type(events, Invitation)
        assert invitation.conversation_id == conv.id
        assert invitation.inviter == ALICE
        assert invitation.conference_uri == conv.conference_uri
        assert invitation.subject == "plan"
        assert ep.conversations == {}
    for ep in (bob, carol):
        sim.engine.accept(ep, conv.id)
    sim.engine.send_message(bob, conv.id, "after", "text/plain")
    got = of_type(sim.drain(carol), MessageReceived)
    assert [(m.sequence, m.body) for m in got] == [(1, "after")]  # IM text is not kept
    restored = sim.engine.immcu.conversations[conv.id]
    assert not restored.restored
    assert roster(sim, conv.id).members == ids(sim, ALICE, BOB, CAROL)  # type: ignore[union-attr]


def test_member_who_signs_in_later_is_rung(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", None)
    sim.engine.accept(bob, conv.id)
    sim.engine.accept(carol, conv.id)
    row = roster(sim, conv.id)  # on the secondary when the host crashed with Alice's session
    sim.engine.sign_out(alice)
    hand_over_and_restore(sim, conv.id, row)
    alice_again = sim.sign_in(ALICE)
    (invitation,) = of_type(sim.drain(alice_again), Invitation)
    assert invitation.conversation_id == conv.id
    sim.engine.accept(alice_again, conv.id)
    assert sim.user(ALICE).invitations == set()


def test_restored_conference_nobody_rejoins_ends(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", None)
    hand_over_and_restore(sim, conv.id)
    assert conv.id in sim.engine.immcu.conversations
    sim.advance(sim.engine.config.timers.invitation_timeout + 1)
    assert conv.id not in sim.engine.immcu.conversations
    assert roster(sim, conv.id) is None
    for ep in (alice, bob, carol):
        # the last one left invited is told it was cancelled
        assert of_type(sim.drain(ep), ConversationEnded)[-1].reason in {"no-answer", "cancelled"}


def test_restored_roster_of_one_ends_at_once(sim: Sim) -> None:
    alice, _, _ = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", None)
    row = roster(sim, conv.id)
    assert row is not None
    sim.engine.immcu.hand_over(group_of(conv.id) or 0, "host-changed")
    lonely = ConferenceRow(
        row.conversation_id, row.organizer_id, row.conference_uri, "", 0.0, (row.organizer_id,)
    )
    stand_in = stand_in_for(sim, ALICE)
    sim.engine.immcu.restore(lonely, stand_in, [sim.user(ALICE)])
    assert conv.id not in sim.engine.immcu.conversations
    assert roster(sim, conv.id) is None


def test_hand_over_keeps_other_groups(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("hi"))
    group = group_of(conv.id)
    assert group is not None
    assert sim.engine.immcu.hand_over(group + 1, "host-changed") == []
    assert conv.id in sim.engine.immcu.conversations
    assert sim.user(ALICE).conversations == 1
    sim.engine.immcu.hand_over(group, "host-changed")
    assert sim.user(ALICE).conversations == 0
    assert sim.user(BOB).invitations == set()
    assert of_type(sim.drain(bob), ConversationEnded)[-1].reason == "host-changed"


def test_a_member_who_lost_their_session_stays_on_the_roster_and_is_rung_again(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", None)
    sim.engine.accept(bob, conv.id)
    sim.engine.accept(carol, conv.id)
    for ep in (alice, bob, carol):
        sim.drain(ep)
    sim.engine.sign_out(carol, "home-server-changed")  # her home moved (or failed)
    left = of_type(sim.drain(alice), ParticipantLeft)
    assert [(p.user_uri, p.reason) for p in left] == [(CAROL, "home-server-changed")]
    assert roster(sim, conv.id).members == ids(sim, ALICE, BOB, CAROL)  # type: ignore[union-attr]
    carol_again = sim.sign_in(CAROL)
    (invitation,) = of_type(sim.drain(carol_again), Invitation)
    assert invitation.conversation_id == conv.id
    sim.engine.accept(carol_again, conv.id)
    sim.engine.send_message(alice, conv.id, "welcome back", "text/plain")
    assert [m.body for m in of_type(sim.drain(carol_again), MessageReceived)] == ["welcome back"]


def test_a_member_who_signs_out_leaves_the_roster(sim: Sim) -> None:
    alice, bob, carol = sim.sign_in(ALICE), sim.sign_in(BOB), sim.sign_in(CAROL)
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", None)
    sim.engine.accept(bob, conv.id)
    sim.engine.accept(carol, conv.id)
    sim.engine.sign_out(carol)
    assert roster(sim, conv.id).members == ids(sim, ALICE, BOB)  # type: ignore[union-attr]
    assert of_type(sim.drain(sim.sign_in(CAROL)), Invitation) == []


def test_a_restarted_standard_server_forgets_rosters_a_crash_left() -> None:
    store = MemoryStore()
    store.put_conference(ConferenceRow("c-g0-ab", 1, "uri", "", 0.0, (1, 2)))
    Engine(EngineConfig(password_iterations=1), store, FakeClock()).load()
    assert list(store.load_conferences()) == []
