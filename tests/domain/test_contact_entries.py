"""Contact entries are immutable values shared between lists (a pool holds millions of
contacts but few distinct access level and group pairs), and the sharing is bounded."""

from __future__ import annotations

import dataclasses

import pytest

from pool import directory
from pool.directory import ContactEntry, contact_entry
from pool.presence_service import BulkContact

from .conftest import ALICE, BOB, CAROL, Sim


def test_equal_entries_are_one_object_and_cannot_be_changed() -> None:
    a, b = contact_entry(400, "Friends"), contact_entry(400, "Friends")
    assert a is b
    assert a == ContactEntry(400, "Friends")
    assert contact_entry(400, "Team") is not a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.group = "Team"  # type: ignore[misc]


def test_past_the_cap_new_pairs_get_their_own_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory, "_ENTRIES", {})
    monkeypatch.setattr(directory, "MAX_SHARED_ENTRIES", 2)
    contact_entry(1, "a")
    contact_entry(1, "b")
    late = contact_entry(1, "c")  # client-chosen group names cannot grow the table
    assert late == ContactEntry(1, "c")
    assert contact_entry(1, "c") is not late
    assert len(directory._ENTRIES) == 2


def test_lists_share_entries_and_changing_one_leaves_the_other(sim: Sim) -> None:
    sim.engine.provision_contacts(
        [BulkContact(ALICE, CAROL, 0, "Team"), BulkContact(BOB, CAROL, 0, "Team")]
    )
    carol = sim.user(CAROL).id
    alice, bob = sim.user(ALICE), sim.user(BOB)
    assert alice.contacts[carol] is bob.contacts[carol]
    sim.engine.provision_contacts([BulkContact(ALICE, CAROL, 400, "Friends")])
    assert alice.contacts[carol] == ContactEntry(400, "Friends")
    assert bob.contacts[carol] == ContactEntry(0, "Team")
