"""The engine's operations for the other front ends of an Enterprise pool: stand-in endpoints
that watch users or take part in conversations for an endpoint elsewhere, a remote user's
stand-in that receives what is sent to all of their endpoints, loading and forgetting a
group's persistent data, and open invitations from conversations hosted elsewhere."""

from __future__ import annotations

from pool.events import EventQueue, Invitation, MessageReceived, ParticipantLeft, PresenceChanged
from pool.presence import BUSY, OFFLINE_AGGREGATE
from pool.presence_service import Publication
from pool.privacy import Reach
from pool.registrar import StandIn
from pool.store import ContactRow, PresenceRow
from tests.domain.conftest import ALICE, BOB, CAROL, Sim, of_type


def stand_in(sim: Sim, uri: str, endpoint_id: str = "remote-ep") -> StandIn:
    return StandIn.of(endpoint_id, sim.user(uri), EventQueue(1000))


def test_a_stand_in_watches_and_is_notified_until_unwatched(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    proxy = stand_in(sim, BOB)
    views = sim.engine.watch(proxy, [sim.user(ALICE)])
    assert [v.user_uri for v in views] == [ALICE]
    assert proxy in sim.user(ALICE).watchers
    assert sim.user(ALICE).id in proxy.subscriptions
    sim.engine.publish(alice, Publication(availability=BUSY))
    assert of_type(proxy.queue.drain(100, 0.0), PresenceChanged)
    sim.engine.unwatch(proxy, [sim.user(ALICE)])
    assert proxy not in sim.user(ALICE).watchers
    assert not proxy.subscriptions


def test_dropping_a_stand_in_ends_its_watches_and_takes_it_out_of_conversations(
    sim: Sim,
) -> None:
    alice = sim.sign_in(ALICE)
    sim.sign_in(CAROL)
    proxy = stand_in(sim, BOB)
    sim.engine.watch(proxy, [sim.user(ALICE)])
    ok = {sim.user(BOB).id: Reach.OK}  # as Bob's home would judge it
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", None, ok)
    sim.engine.accept(proxy, conv.id)
    sim.drain(alice)
    sim.engine.drop_stand_in(proxy, "connection-lost")
    assert proxy.signed_out
    assert proxy not in sim.user(ALICE).watchers
    assert not proxy.conversations
    left = of_type(sim.drain(alice), ParticipantLeft)
    assert [(e.user_uri, e.reason) for e in left] == [(BOB, "connection-lost")]


def test_a_remote_users_stand_in_is_rung_with_their_invitations(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.user(BOB)
    mirror = stand_in(sim, BOB, "user-2")
    sim.engine.attach_stand_in(bob, mirror)
    sim.engine.attach_stand_in(bob, mirror)  # once only
    assert bob.endpoints == [mirror]
    conv, _ = sim.engine.create_conversation(alice, [BOB], "", None, {bob.id: Reach.OK})
    assert of_type(mirror.queue.drain(100, 0.0), Invitation)[0].conversation_id == conv.id
    assert [i.conversation_id for i in sim.engine.invitations_for(bob)] == [conv.id]
    sim.engine.detach_stand_in(bob, mirror)
    assert bob.endpoints == []


def test_invitations_from_elsewhere_open_and_close(sim: Sim) -> None:
    bob = sim.user(BOB)
    sim.engine.invited_elsewhere(bob, "c-g1-abc")
    assert bob.invitations == {"c-g1-abc"}
    assert sim.engine.invitation_closed(bob, "c-g1-abc")
    assert not sim.engine.invitation_closed(bob, "c-g1-abc")
    assert bob.invitations == set()


def test_loading_and_forgetting_a_groups_persistent_data(sim: Sim) -> None:
    alice, bob = sim.user(ALICE), sim.user(BOB)
    proxy = stand_in(sim, CAROL)
    sim.engine.watch(proxy, [alice])
    sim.engine.load_persistent(
        [alice],
        [ContactRow(alice.id, bob.id, 0, "Friends")],
        [PresenceRow(alice.id, BUSY, "in-a-meeting", "back at 3")],
    )
    assert set(alice.contacts) == {bob.id}
    assert alice.states.note == "back at 3"
    sim.engine.load_persistent([alice], [], [])  # a reload replaces, never merges
    assert alice.contacts == {}
    assert alice.states.manual is None
    sim.engine.load_persistent([alice], [ContactRow(alice.id, bob.id, 0, "")], [])
    sim.engine.forget_user(alice)
    assert alice.contacts == {}
    assert alice.current == OFFLINE_AGGREGATE
    assert proxy not in alice.watchers
    assert not proxy.subscriptions


def test_a_group_handed_over_ends_its_conversations_here(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    cid = sim.two_party(alice, bob)
    group = sim.user(ALICE).routing_group
    assert sim.engine.conversation(cid) is not None
    handed = sim.engine.hand_over(group, "host-changed")
    assert [c.id for c in handed] == [cid]
    assert sim.engine.conversation(cid) is None
    assert not alice.conversations


class _Forwarding(EventQueue):
    """A stand-in's queue as Enterprise's are: capacity 0, everything through ``push``."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        super().__init__(0)
        self.sent: list[object] = []

    def push(self, event: object, mono: float) -> bool:  # type: ignore[override]
        self.sent.append(event)
        return True


def test_a_stand_in_queue_that_forwards_gets_every_message_through_its_push(sim: Sim) -> None:
    alice, carol = sim.sign_in(ALICE), sim.sign_in(CAROL)
    forwarding = _Forwarding()
    proxy = StandIn.of("remote-ep", sim.user(BOB), forwarding)
    ok = {sim.user(BOB).id: Reach.OK}
    conv, _ = sim.engine.create_conversation(alice, [BOB, CAROL], "", None, ok)
    sim.engine.accept(proxy, conv.id)
    sim.engine.accept(carol, conv.id)
    forwarding.sent.clear()
    for body in ("one", "two", "three"):
        sim.engine.send_message(alice, conv.id, body, "text/plain")
    sent = [e.body for e in of_type(forwarding.sent, MessageReceived)]  # type: ignore[arg-type]
    assert sent == ["one", "two", "three"]
    assert [e.body for e in of_type(sim.drain(carol), MessageReceived)] == sent
    assert not forwarding._items  # nothing kept in the stand-in's own deque
