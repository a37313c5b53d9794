"""SPEC section 3: what each access level sees, purely and through the engine."""

from __future__ import annotations

import pytest

from pool.events import PresenceChanged
from pool.presence import AVAILABLE, BUSY, DND, OFFLINE, URGENT_ONLY, Aggregate
from pool.presence_service import Publication, Source
from pool.privacy import AccessLevel, PresenceView, default_level, view

from .conftest import ALICE, BOB, CAROL, DAVE, ERIN, EXTERNAL, Sim, of_type

L = AccessLevel
URI = "sip:bob@contoso.com"
UNTIL = 1_800_003_600.0
MEETING = Aggregate(BUSY, "in-a-meeting", "ask me later", UNTIL, "Budget review", 2)
DND_AGG = Aggregate(DND, "presenting", "quiet please", 0.0, "", 1)


def test_blocked_sees_offline_and_nothing_else() -> None:
    for agg in (MEETING, DND_AGG, Aggregate(AVAILABLE, "", "hi", 0.0, "", 3)):
        assert view(URI, agg, L.BLOCKED) == PresenceView(URI, OFFLINE, "", "", L.BLOCKED)


def test_external_sees_availability_only() -> None:
    assert view(URI, MEETING, L.EXTERNAL) == PresenceView(URI, BUSY, "", "", L.EXTERNAL)
    assert view(URI, DND_AGG, L.EXTERNAL) == PresenceView(URI, DND, "", "", L.EXTERNAL)


def test_colleagues_see_activity_and_note_without_meeting_details() -> None:
    assert view(URI, MEETING, L.COLLEAGUES) == PresenceView(
        URI, BUSY, "in-a-meeting", "ask me later", L.COLLEAGUES, 0.0, "", 2
    )


def test_colleagues_see_do_not_disturb_as_is() -> None:
    seen = view(URI, DND_AGG, L.COLLEAGUES)
    assert (seen.availability, seen.activity) == (DND, "presenting")


def test_workgroup_sees_do_not_disturb_as_urgent_interruptions_only() -> None:
    assert view(URI, DND_AGG, L.WORKGROUP) == PresenceView(
        URI, URGENT_ONLY, "urgent-interruptions-only", "quiet please", L.WORKGROUP, 0.0, "", 1
    )
    assert URGENT_ONLY == 6900


def test_workgroup_sees_meeting_details() -> None:
    assert view(URI, MEETING, L.WORKGROUP) == PresenceView(
        URI, BUSY, "in-a-meeting", "ask me later", L.WORKGROUP, UNTIL, "Budget review", 2
    )


def test_friends_and_family_see_all_but_meeting_details() -> None:
    assert view(URI, MEETING, L.FRIENDS_AND_FAMILY) == PresenceView(
        URI, BUSY, "in-a-meeting", "ask me later", L.FRIENDS_AND_FAMILY, 0.0, "", 2
    )
    assert view(URI, DND_AGG, L.FRIENDS_AND_FAMILY).availability == DND


def test_self_sees_everything() -> None:
    seen = view(URI, MEETING, L.UNSPECIFIED, is_self=True)
    assert (seen.calendar_until, seen.meeting_subject, seen.note) == (
        UNTIL,
        "Budget review",
        "ask me later",
    )


@pytest.mark.parametrize(
    ("owner", "watcher", "level"),
    [
        ("contoso.com", "contoso.com", L.COLLEAGUES),
        ("contoso.com", "fabrikam.com", L.EXTERNAL),
        ("fabrikam.com", "contoso.com", L.EXTERNAL),
    ],
)
def test_default_level_by_domain(owner: str, watcher: str, level: AccessLevel) -> None:
    assert default_level(owner, watcher) is level


# --- through the engine ---


def _bob_in_dnd_with_contacts(sim: Sim) -> None:
    """Bob: DND with a note and a meeting; Carol is Workgroup, Dave Friends, Erin Blocked."""
    bob = sim.sign_in(BOB)
    sim.engine.add_contact(bob, CAROL, int(L.WORKGROUP), "Team")
    sim.engine.add_contact(bob, DAVE, int(L.FRIENDS_AND_FAMILY), "")
    sim.engine.add_contact(bob, ERIN, int(L.BLOCKED), "")
    sim.engine.publish(bob, Publication(source=Source.USER, availability=DND, note="heads down"))


def test_get_presence_applies_each_watchers_level(sim: Sim) -> None:
    _bob_in_dnd_with_contacts(sim)
    seen = {}
    for uri in (ALICE, CAROL, DAVE, ERIN, EXTERNAL):
        watcher = sim.sign_in(uri)
        [seen[uri]] = sim.engine.get_presence(watcher, [BOB])
    assert seen[ALICE] == PresenceView(BOB, DND, "", "heads down", L.COLLEAGUES, 0.0, "", 1)
    assert seen[CAROL] == PresenceView(
        BOB, URGENT_ONLY, "urgent-interruptions-only", "heads down", L.WORKGROUP, 0.0, "", 1
    )
    assert seen[DAVE] == PresenceView(BOB, DND, "", "heads down", L.FRIENDS_AND_FAMILY, 0.0, "", 1)
    assert seen[ERIN] == PresenceView(BOB, OFFLINE, "", "", L.BLOCKED)
    assert seen[EXTERNAL] == PresenceView(BOB, DND, "", "", L.EXTERNAL)


def test_meeting_details_reach_workgroup_only(sim: Sim) -> None:
    bob = sim.sign_in(BOB)
    sim.engine.add_contact(bob, CAROL, int(L.WORKGROUP), "")
    sim.engine.add_contact(bob, DAVE, int(L.FRIENDS_AND_FAMILY), "")
    until = sim.clock.now() + 1800
    sim.engine.publish(
        bob,
        Publication(
            source=Source.CALENDAR, availability=BUSY, until=until, meeting_subject="Budget review"
        ),
    )
    details = {}
    for uri in (ALICE, CAROL, DAVE, EXTERNAL):
        [v] = sim.engine.get_presence(sim.sign_in(uri), [BOB])
        details[uri] = (v.availability, v.activity, v.calendar_until, v.meeting_subject)
    assert details == {
        ALICE: (BUSY, "in-a-meeting", 0.0, ""),
        CAROL: (BUSY, "in-a-meeting", until, "Budget review"),
        DAVE: (BUSY, "in-a-meeting", 0.0, ""),
        EXTERNAL: (BUSY, "", 0.0, ""),
    }


def test_get_presence_of_self_sees_meeting_details(sim: Sim) -> None:
    bob = sim.sign_in(BOB)
    until = sim.clock.now() + 600
    sim.engine.publish(
        bob,
        Publication(source=Source.CALENDAR, availability=BUSY, until=until, meeting_subject="1:1"),
    )
    [v] = sim.engine.get_presence(bob, [BOB])
    assert (v.calendar_until, v.meeting_subject) == (until, "1:1")


def test_get_presence_of_signed_out_user_is_offline(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    [v] = sim.engine.get_presence(alice, [BOB])
    assert (v.availability, v.endpoints) == (OFFLINE, 0)


def test_blocked_subscriber_is_notified_with_offline_only(sim: Sim) -> None:
    _bob_in_dnd_with_contacts(sim)
    erin = sim.sign_in(ERIN)
    [initial] = sim.engine.subscribe(erin, [BOB], 0)
    assert initial == PresenceView(BOB, OFFLINE, "", "", L.BLOCKED)
    bob = sim.user(BOB).endpoints[0]
    sim.engine.publish(bob, Publication(source=Source.USER, availability=AVAILABLE, note="free"))
    for change in of_type(sim.drain(erin), PresenceChanged):
        assert change.presence == PresenceView(BOB, OFFLINE, "", "", L.BLOCKED)


def test_subscription_views_follow_levels(sim: Sim) -> None:
    _bob_in_dnd_with_contacts(sim)
    carol = sim.sign_in(CAROL)
    ext = sim.sign_in(EXTERNAL)
    [c0] = sim.engine.subscribe(carol, [BOB], 0)
    [e0] = sim.engine.subscribe(ext, [BOB], 0)
    assert (c0.availability, e0.availability) == (URGENT_ONLY, DND)
    bob = sim.user(BOB).endpoints[0]
    sim.engine.publish(
        bob,
        Publication(source=Source.USER, availability=BUSY, activity="on-the-phone", note="call"),
    )
    [c1] = of_type(sim.drain(carol), PresenceChanged)
    [e1] = of_type(sim.drain(ext), PresenceChanged)
    assert c1.presence == PresenceView(BOB, BUSY, "on-the-phone", "call", L.WORKGROUP, 0.0, "", 1)
    assert e1.presence == PresenceView(BOB, BUSY, "", "", L.EXTERNAL)


def test_changing_a_level_pushes_the_new_view_to_that_contact_only(sim: Sim) -> None:
    bob = sim.sign_in(BOB)
    sim.engine.publish(bob, Publication(source=Source.USER, availability=DND, note="n"))
    alice_pc = sim.sign_in(ALICE, "pc")
    alice_phone = sim.sign_in(ALICE, "phone")
    carol = sim.sign_in(CAROL)
    for ep in (alice_pc, alice_phone, carol):
        sim.engine.subscribe(ep, [BOB], 0)
    contact = sim.engine.add_contact(bob, ALICE, int(L.WORKGROUP), "Team")
    assert (contact.user_uri, contact.access_level, contact.group) == (ALICE, L.WORKGROUP, "Team")
    expected = PresenceView(
        BOB, URGENT_ONLY, "urgent-interruptions-only", "n", L.WORKGROUP, 0.0, "", 1
    )
    now = sim.clock.now()
    assert sim.drain(alice_pc) == [PresenceChanged(expected, now)]
    assert sim.drain(alice_phone) == [PresenceChanged(expected, now)]
    assert sim.drain(carol) == []
    sim.engine.add_contact(bob, ALICE, int(L.BLOCKED), "Team")
    blocked = PresenceChanged(PresenceView(BOB, OFFLINE, "", "", L.BLOCKED), now)
    assert sim.drain(alice_pc) == [blocked]
    assert sim.drain(alice_phone) == [blocked]
    sim.engine.remove_contact(bob, ALICE)
    [back] = sim.drain(alice_pc)
    assert isinstance(back, PresenceChanged)
    assert (back.presence.availability, back.presence.seen_as) == (DND, L.COLLEAGUES)
    assert sim.drain(carol) == []


def test_adding_a_contact_at_its_default_level_pushes_nothing(sim: Sim) -> None:
    bob = sim.sign_in(BOB)
    alice = sim.sign_in(ALICE)
    sim.engine.subscribe(alice, [BOB], 0)
    view_ = sim.engine.add_contact(bob, ALICE, 0, "")
    assert (view_.access_level, view_.group) == (L.COLLEAGUES, "Other Contacts")
    assert sim.drain(alice) == []


def test_external_contact_promoted_to_friends_sees_note(sim: Sim) -> None:
    bob = sim.sign_in(BOB)
    sim.engine.publish(bob, Publication(source=Source.USER, availability=AVAILABLE, note="hey"))
    ext = sim.sign_in(EXTERNAL)
    [before] = sim.engine.subscribe(ext, [BOB], 0)
    assert (before.note, before.seen_as) == ("", L.EXTERNAL)
    sim.engine.add_contact(bob, EXTERNAL, int(L.FRIENDS_AND_FAMILY), "")
    [after] = of_type(sim.drain(ext), PresenceChanged)
    assert (after.presence.note, after.presence.seen_as) == ("hey", L.FRIENDS_AND_FAMILY)
