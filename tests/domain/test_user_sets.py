"""A user's watchers and open invitations start as one shared empty frozenset (an empty set
is 216 bytes, and most users of a pool's directory never get either) and become a set of the
user's own at the first member: one user's subscription or invitation never shows on another."""

from __future__ import annotations

from pool.directory import NO_INVITATIONS, NO_WATCHERS

from .conftest import ALICE, BOB, CAROL, DAVE, Sim


def test_users_share_the_empty_sets_until_they_get_a_member(sim: Sim) -> None:
    alice, bob, carol = sim.user(ALICE), sim.user(BOB), sim.user(CAROL)
    assert alice.watchers is NO_WATCHERS
    assert bob.watchers is NO_WATCHERS
    assert alice.invitations is NO_INVITATIONS

    watcher = sim.sign_in(CAROL)
    sim.engine.subscribe(watcher, [ALICE], 3600)
    assert alice.watchers == {watcher}
    assert bob.watchers is NO_WATCHERS
    assert not NO_WATCHERS

    inviter, invitee = sim.sign_in(DAVE), sim.sign_in(BOB)
    conv, _ = sim.engine.create_conversation(inviter, [invitee.uri], "", None)
    assert conv.id in bob.invitations
    assert carol.invitations is NO_INVITATIONS
    assert not NO_INVITATIONS

    sim.engine.decline(invitee, conv.id)
    assert conv.id not in bob.invitations
    sim.engine.unsubscribe(watcher, [ALICE])
    assert not alice.watchers


def test_removing_what_a_user_never_had_changes_nothing(sim: Sim) -> None:
    alice = sim.user(ALICE)
    alice.uninvite("c-none")
    alice.unwatch(sim.sign_in(BOB))
    assert alice.invitations is NO_INVITATIONS
    assert alice.watchers is NO_WATCHERS
