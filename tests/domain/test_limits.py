"""SPEC sections 3 to 5: documented limits, input validation, and failed store writes."""

from __future__ import annotations

import pytest

from pool.errors import InvalidArgument, NotFound, ResourceExhausted
from pool.events import ChatMessage, MessageReceived, PresenceChanged
from pool.presence import AVAILABLE, BUSY, DND
from pool.presence_service import Publication, Source
from pool.privacy import AccessLevel
from pool.store import ContactRow, PresenceRow

from .conftest import ALICE, BOB, CAROL, Sim

L = AccessLevel


# --- endpoints ---


def test_eight_endpoints_per_user_then_resource_exhausted(sim: Sim) -> None:
    eps = [sim.sign_in(ALICE, f"device-{i}") for i in range(8)]
    assert len(sim.user(ALICE).endpoints) == 8
    with pytest.raises(ResourceExhausted, match="8"):
        sim.sign_in(ALICE, "device-8")
    assert len(sim.user(ALICE).endpoints) == 8
    assert len(sim.engine.registrar) == 8
    sim.engine.sign_out(eps[0])
    ninth = sim.sign_in(ALICE, "device-8")
    assert ninth in sim.user(ALICE).endpoints


def test_device_name_too_long(sim: Sim) -> None:
    with pytest.raises(InvalidArgument, match="device"):
        sim.sign_in(ALICE, "d" * 65)


# --- contacts ---


def test_250_contacts_then_resource_exhausted(sim: Sim) -> None:
    uris = sim.provision("c", 251)
    alice = sim.sign_in(ALICE)
    for uri in uris[:250]:
        sim.engine.add_contact(alice, uri, 0, "")
    assert len(sim.user(ALICE).contacts) == 250
    with pytest.raises(ResourceExhausted, match="250"):
        sim.engine.add_contact(alice, uris[250], 0, "")
    assert len(sim.user(ALICE).contacts) == 250
    assert len(sim.store.contacts) == 250
    # changing an existing contact is not a new one
    view = sim.engine.add_contact(alice, uris[0], int(L.WORKGROUP), "Team")
    assert view.access_level is L.WORKGROUP
    assert sim.engine.remove_contact(alice, uris[1]) == 249
    sim.engine.add_contact(alice, uris[250], 0, "")
    assert len(sim.user(ALICE).contacts) == 250


def test_unknown_access_level_is_invalid(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(InvalidArgument, match="access_level"):
        sim.engine.add_contact(alice, BOB, 150, "")
    assert sim.user(ALICE).contacts == {}


def test_adding_oneself_as_contact_is_invalid(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(InvalidArgument):
        sim.engine.add_contact(alice, ALICE, 0, "")


def test_removing_a_non_contact_is_not_found(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(NotFound):
        sim.engine.remove_contact(alice, BOB)


# --- subscriptions ---


def test_200_subscriptions_per_user_across_endpoints(sim: Sim) -> None:
    uris = sim.provision("w", 201)
    pc = sim.sign_in(ALICE, "pc")
    phone = sim.sign_in(ALICE, "phone")
    assert len(sim.engine.subscribe(pc, uris[:150], 0)) == 150
    assert len(sim.engine.subscribe(phone, uris[150:200], 0)) == 50
    assert sim.user(ALICE).subscriptions == 200
    with pytest.raises(ResourceExhausted, match="200"):
        sim.engine.subscribe(phone, [uris[200]], 0)
    with pytest.raises(ResourceExhausted):
        sim.engine.subscribe(pc, [uris[200]], 0)
    assert sim.user(ALICE).subscriptions == 200
    assert phone not in sim.user(uris[200]).watchers
    # renewing existing subscriptions takes no new slot
    assert len(sim.engine.subscribe(pc, uris[:10], 0)) == 10
    assert sim.engine.unsubscribe(pc, [uris[0]]) == 199
    sim.engine.subscribe(phone, [uris[200]], 0)
    assert sim.user(ALICE).subscriptions == 200


def test_sign_out_releases_subscriptions(sim: Sim) -> None:
    uris = sim.provision("w", 200)
    pc = sim.sign_in(ALICE, "pc")
    phone = sim.sign_in(ALICE, "phone")
    sim.engine.subscribe(pc, uris, 0)
    sim.engine.sign_out(pc)
    assert sim.user(ALICE).subscriptions == 0
    assert pc not in sim.user(uris[0]).watchers
    assert len(sim.engine.subscribe(phone, uris, 0)) == 200


def test_subscription_expires(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    sim.engine.subscribe(alice, [BOB], 60)
    assert sim.user(ALICE).subscriptions == 1
    sim.advance(60)
    assert sim.user(ALICE).subscriptions == 0
    sim.engine.publish(bob, Publication(source=Source.USER, availability=BUSY))
    assert [e for e in sim.drain(alice) if isinstance(e, PresenceChanged)] == []


def test_subscribe_expires_out_of_range(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(InvalidArgument, match="expires"):
        sim.engine.subscribe(alice, [BOB], 86_401)


# --- presence document ---


def test_note_of_4096_bytes_is_accepted(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    view = sim.engine.publish(
        alice, Publication(source=Source.USER, availability=AVAILABLE, note="n" * 4096)
    )
    assert len(view.note) == 4096


def test_note_over_4096_bytes_is_invalid(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(InvalidArgument, match="4096"):
        sim.engine.publish(
            alice, Publication(source=Source.USER, availability=AVAILABLE, note="n" * 4097)
        )
    assert sim.user(ALICE).states.note == ""
    assert sim.user(ALICE).states.manual is None


def test_note_limit_counts_utf8_bytes_not_characters(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(InvalidArgument, match="bytes"):
        sim.engine.publish(
            alice, Publication(source=Source.USER, availability=AVAILABLE, note="é" * 2049)
        )  # 4098 bytes


def test_unknown_user_availability_is_invalid(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(InvalidArgument, match="availability"):
        sim.engine.publish(alice, Publication(source=Source.USER, availability=4000))


# --- messages and conversations ---


def test_body_of_8000_chars_is_accepted_8001_invalid(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    conv = sim.two_party(alice, bob)
    _, seq = sim.engine.send_message(alice, conv, "x" * 8000, "text/plain")
    assert seq == 2
    with pytest.raises(InvalidArgument, match="8000"):
        sim.engine.send_message(alice, conv, "x" * 8001, "text/plain")
    assert sim.engine.immcu.conversations[conv].sequence == 2


def test_first_message_over_8000_chars_is_invalid(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    sim.sign_in(BOB)
    with pytest.raises(InvalidArgument, match="8000"):
        sim.engine.create_conversation(alice, [BOB], "", ChatMessage("x" * 8001))
    assert sim.engine.immcu.conversations == {}


def test_empty_body_is_invalid(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    conv = sim.two_party(alice, bob)
    with pytest.raises(InvalidArgument, match="empty"):
        sim.engine.send_message(alice, conv, "", "text/plain")


@pytest.mark.parametrize("content_type", ["application/json", "text/markdown", "TEXT/PLAIN"])
def test_unknown_content_type_is_invalid(sim: Sim, content_type: str) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    conv = sim.two_party(alice, bob)
    with pytest.raises(InvalidArgument, match="content_type"):
        sim.engine.send_message(alice, conv, "hi", content_type)


@pytest.mark.parametrize("content_type", ["text/plain", "text/html", "text/rtf", ""])
def test_known_content_types_are_accepted(sim: Sim, content_type: str) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    conv = sim.two_party(alice, bob)
    _, seq = sim.engine.send_message(alice, conv, "hi", content_type)
    assert seq == 2
    [msg] = sim.drain(bob)
    assert isinstance(msg, MessageReceived)
    assert msg.content_type == (content_type or "text/plain")


def test_empty_invitees_is_invalid(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(InvalidArgument, match="invitees"):
        sim.engine.create_conversation(alice, [], "", ChatMessage("hi"))


def test_inviting_oneself_is_invalid(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(InvalidArgument, match="themselves"):
        sim.engine.create_conversation(alice, [ALICE], "", None)


@pytest.mark.parametrize(
    "bad",
    [
        "alice@contoso.com",
        "sip:alice",
        "sip:@contoso.com",
        "sip:al ice@contoso.com",
        "tel:+15550100",
        "",
    ],
)
def test_malformed_uri_is_invalid(sim: Sim, bad: str) -> None:
    alice = sim.sign_in(ALICE)
    with pytest.raises(InvalidArgument):
        sim.engine.create_conversation(alice, [bad], "", None)
    with pytest.raises(InvalidArgument):
        sim.engine.get_presence(alice, [bad])
    with pytest.raises(InvalidArgument):
        sim.engine.add_contact(alice, bad, 0, "")


def test_unknown_user_is_not_found(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    nobody = "sip:nobody@contoso.com"
    with pytest.raises(NotFound, match="nobody"):
        sim.engine.create_conversation(alice, [nobody], "", None)
    with pytest.raises(NotFound, match="nobody"):
        sim.engine.get_presence(alice, [BOB, nobody])
    with pytest.raises(NotFound):
        sim.engine.subscribe(alice, [nobody], 0)
    with pytest.raises(NotFound):
        sim.engine.add_contact(alice, nobody, 0, "")
    assert sim.user(ALICE).subscriptions == 0


def test_uris_compare_case_insensitively(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    [v] = sim.engine.get_presence(alice, [BOB.replace("user1", "USER1")])
    assert v.user_uri == BOB


# --- failed store writes leave memory unchanged ---


def test_failed_store_write_leaves_contacts_unchanged(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    sim.engine.add_contact(alice, CAROL, int(L.WORKGROUP), "Team")
    sim.engine.subscribe(bob, [ALICE], 0)
    contacts_before = dict(sim.user(ALICE).contacts)
    stored_before = dict(sim.store.contacts)
    sim.store.fail_next = RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        sim.engine.add_contact(alice, BOB, int(L.BLOCKED), "Blocked")
    assert sim.user(ALICE).contacts == contacts_before
    assert sim.store.contacts == stored_before
    assert sim.user(ALICE).level_for(sim.user(BOB)) is L.COLLEAGUES
    assert sim.drain(bob) == []  # no view was pushed for a change that did not happen
    # the store works again: the same request now succeeds
    sim.engine.add_contact(alice, BOB, int(L.BLOCKED), "Blocked")
    assert sim.store.contacts[(sim.user(ALICE).id, sim.user(BOB).id)] == ContactRow(
        sim.user(ALICE).id, sim.user(BOB).id, int(L.BLOCKED), "Blocked"
    )


def test_failed_store_write_leaves_contact_removal_undone(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    sim.engine.add_contact(alice, BOB, int(L.WORKGROUP), "")
    sim.store.fail_next = RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        sim.engine.remove_contact(alice, BOB)
    assert sim.user(BOB).id in sim.user(ALICE).contacts
    assert len(sim.store.contacts) == 1


def test_failed_store_write_leaves_manual_presence_unchanged(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    sim.engine.publish(alice, Publication(source=Source.USER, availability=BUSY, note="old"))
    sim.engine.subscribe(bob, [ALICE], 0)
    user = sim.user(ALICE)
    states_before = (user.states.manual, user.states.note)
    current_before = user.current
    stored_before = dict(sim.store.presence)
    sim.store.fail_next = RuntimeError("disk full")
    with pytest.raises(RuntimeError, match="disk full"):
        sim.engine.publish(alice, Publication(source=Source.USER, availability=DND, note="new"))
    assert (user.states.manual, user.states.note) == states_before
    assert user.current == current_before
    assert user.current.availability == BUSY
    assert sim.store.presence == stored_before
    assert sim.store.presence[user.id] == PresenceRow(user.id, BUSY, "", "old")
    assert sim.drain(bob) == []


def test_failed_store_write_leaves_reset_undone(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    sim.engine.publish(alice, Publication(source=Source.USER, availability=DND))
    sim.store.fail_next = RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        sim.engine.reset_presence(alice)
    assert sim.user(ALICE).current.availability == DND
    assert sim.engine.reset_presence(alice).availability == AVAILABLE


def test_failed_store_write_leaves_calendar_publication_unchanged(sim: Sim) -> None:
    alice = sim.sign_in(ALICE)
    sim.store.fail_next = RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        sim.engine.publish(
            alice,
            Publication(
                source=Source.CALENDAR,
                availability=BUSY,
                note="in a meeting",
                until=sim.clock.now() + 3600,
            ),
        )
    assert sim.user(ALICE).states.calendar is None
    assert sim.user(ALICE).states.note == ""
