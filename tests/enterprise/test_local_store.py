"""A front end's local replica store (enterprise.local_store) under its ReplicatingStore:
writes durable per batch, replicas reloaded after a restart with their sequence, and a
returning replica brought level with the primary by only the writes it missed. Real SQLite
files, no sockets."""

from __future__ import annotations

from pathlib import Path

from enterprise.local_store import FRONT_END_FAILURE, LocalReplicaStore, lost_with, store_path
from enterprise.replica import (
    ConferenceEnded,
    ContactDeleted,
    ContactTable,
    GroupData,
    ReplicatingStore,
)
from pool.store import ConferenceRow, ContactRow, PresenceRow

GROUP = 3


def same(a: GroupData, b: GroupData) -> bool:
    return (a.contacts, a.presence, a.conferences) == (b.contacts, b.presence, b.conferences)


def store(path: Path) -> ReplicatingStore:
    return ReplicatingStore(lambda user_id: GROUP, LocalReplicaStore(path))


def test_a_primary_s_writes_are_on_disk_once_taken_for_shipping(tmp_path: Path) -> None:
    primary = store(tmp_path / "p.db")
    primary.put_presence(PresenceRow(1, 3500, "", "in a meeting"))
    primary.put_contact(ContactRow(1, 2, 0, "Friends"))
    primary.put_conference(ConferenceRow("c-1", 1, "sip:c-1", "plan", 5.0, (1, 2)))
    batches = primary.take_pending()
    assert batches[GROUP][0] == 3
    local = primary.local
    assert local is not None
    assert local.transactions == 1  # one transaction for the batch
    local.close()

    again = store(tmp_path / "p.db")  # the front end restarted

    assert again.groups[GROUP].seq == 3
    assert same(again.groups[GROUP], primary.groups[GROUP])
    assert again.groups[GROUP].conferences["c-1"].members == (1, 2)


def test_a_returning_secondary_catches_up_with_only_what_it_missed(tmp_path: Path) -> None:
    primary = store(tmp_path / "p.db")
    secondary = store(tmp_path / "s.db")
    for i in range(10):
        primary.put_contact(ContactRow(1, 100 + i, 0, "Other"))
    primary.put_conference(ConferenceRow("c-1", 1, "sip:c-1", "", 0.0, (1,)))
    for g, (seq, writes) in primary.take_pending().items():
        secondary.apply_replicated(g, seq - len(writes), seq, writes)
    assert secondary.local is not None
    secondary.local.close()  # the secondary's front end goes down at seq 11

    primary.delete_contact(1, 100)
    primary.delete_conference("c-1", 1)
    primary.put_presence(PresenceRow(1, 6500, "", "busy"))
    primary.take_pending()

    back = store(tmp_path / "s.db")
    since = back.groups[GROUP].seq
    assert since == 11
    missed = primary.changes_since(GROUP, since)
    assert missed is not None
    seq, writes = missed
    assert seq == 14
    assert sorted(map(repr, writes)) == sorted(
        map(
            repr,
            [
                ContactDeleted(1, 100),
                ConferenceEnded("c-1"),
                PresenceRow(1, 6500, "", "busy"),
            ],
        )
    )
    back.apply_replicated(GROUP, since, seq, writes)
    assert same(back.groups[GROUP], primary.groups[GROUP])
    assert back.groups[GROUP].seq == 14


def test_below_a_whole_copy_only_a_whole_copy_will_do(tmp_path: Path) -> None:
    local = LocalReplicaStore(tmp_path / "r.db")
    local.replace_group(GROUP, GroupData(40, ContactTable([ContactRow(1, 2, 0, "Friends")])))
    assert local.changes_since(GROUP, 39) is None
    assert local.changes_since(GROUP, 40) == (40, [])
    assert local.changes_since(GROUP + 1, 0) is None
    assert local.freshness() == {GROUP: 40}
    local.drop(GROUP)
    assert local.freshness() == {}
    local.close()


def ship(primary: ReplicatingStore, secondary: ReplicatingStore) -> None:
    """The primary's pending writes, as its live batches, applied on ``secondary``."""
    for g, (seq, writes) in primary.take_pending().items():
        secondary.apply_replicated(g, seq - len(writes), seq, writes)


def test_live_writes_before_the_catch_up_lands_do_not_raise_the_mark(tmp_path: Path) -> None:
    """The catch-up window: a returning replica gets live writes past the gap it has not
    been sent yet; its mark (what it reports, what a fail-over ranks it by, what it reports
    again after another restart) stays where its history has no hole, until the catch-up."""
    primary = store(tmp_path / "p.db")
    secondary = store(tmp_path / "s.db")
    for i in range(10):
        primary.put_contact(ContactRow(1, 100 + i, 0, "Other"))
    ship(primary, secondary)
    assert secondary.local is not None
    secondary.local.close()  # down at 10
    for i in range(5):  # acknowledged by the other secondary while this one is away
        primary.put_contact(ContactRow(2, 200 + i, 0, "Gap"))
    primary.take_pending()

    back = store(tmp_path / "s.db")
    assert back.groups[GROUP].seq == 10
    primary.put_presence(PresenceRow(1, 6500, "", "busy"))
    primary.put_contact(ContactRow(3, 300, 0, "Live"))
    ship(primary, back)  # live writes 16..17 arrive before the catch-up

    assert back.groups[GROUP].seq == 10  # not 17: 11..15 are missing
    assert back.groups[GROUP].top == 17
    assert (3, 300) in back.groups[GROUP].contacts
    assert back.local is not None
    assert back.local.freshness() == {GROUP: 10}
    back.local.close()  # it crashes again inside the window

    again = store(tmp_path / "s.db")
    assert again.groups[GROUP].seq == 10  # its disk says 10 too: it catches up from there
    missed = primary.changes_since(GROUP, again.groups[GROUP].seq)
    assert missed is not None
    seq, writes = missed
    assert seq == 17
    again.apply_replicated(GROUP, 10, seq, writes)
    assert again.groups[GROUP].seq == 17
    assert same(again.groups[GROUP], primary.groups[GROUP])
    primary.put_contact(ContactRow(3, 301, 0, "Live"))
    ship(primary, again)
    assert again.groups[GROUP].seq == 18  # contiguous again: live writes raise it


def test_a_replica_promoted_past_a_gap_numbers_its_writes_after_all_it_holds() -> None:
    replica = ReplicatingStore(lambda user_id: GROUP)
    replica.apply_replicated(GROUP, 0, 4, [ContactRow(1, 1, 0, "a")])
    replica.apply_replicated(GROUP, 9, 12, [ContactRow(1, 2, 0, "b")])  # a gap: 5..9
    data = replica.groups[GROUP]
    assert (data.seq, data.top) == (4, 12)
    assert data.snapshot().seq == 12  # a whole copy from it knows nothing before it

    replica.put_contact(ContactRow(1, 3, 0, "c"))  # it was made primary, and writes

    batches = replica.take_pending()
    assert batches[GROUP][0] == 13  # never a number already used
    assert (data.seq, data.top) == (13, 13)


def test_endpoints_lost_with_a_front_end_get_their_record_once(tmp_path: Path) -> None:
    """The pool takes the lost endpoints when it notices the crash; the front end, back
    later, finds none left: one ``front-end-failure`` row each, dated when it was noticed."""
    local = LocalReplicaStore(store_path(tmp_path, "fe2"))
    local.register("ep-1", "sip:a@x.com", "desktop", 10.0)
    local.register("ep-2", "sip:b@x.com", "mobile", 11.0)
    local.register("ep-3", "sip:c@x.com", "desktop", 12.0)
    local.deregister("ep-3")  # signed out before the crash: its row was written then
    local.close()  # crashed

    records = lost_with("fe2", tmp_path, 50.0)

    assert [(t, r.endpoint_id, r.deregister_reason, r.registrar) for t, r in records] == [
        (50.0, "ep-1", FRONT_END_FAILURE, "fe2"),
        (50.0, "ep-2", FRONT_END_FAILURE, "fe2"),
    ]
    assert records[1][1].register_time == 11.0
    assert records[1][1].deregister_time == 50.0
    assert lost_with("fe2", tmp_path, 60.0) == []  # nothing twice
    back = LocalReplicaStore(store_path(tmp_path, "fe2"))
    assert back.take_registrations() == []  # the front end, back, writes none either
    back.close()
    assert lost_with("fe9", tmp_path, 60.0) == []  # no store at all


def test_rows_are_stored_as_json_arrays_of_their_fields(tmp_path: Path) -> None:
    """The file's format (schema version 1): a row's value is its fields in order, as JSON."""
    import sqlite3

    primary = store(tmp_path / "p.db")
    primary.put_presence(PresenceRow(1, 3500, "", 'say "hi" \u00e9'))
    primary.put_contact(ContactRow(1, 2, 300, "Team"))
    primary.put_conference(ConferenceRow("c-1", 1, "sip:c-1", "plan", 5.5, (1, 2)))
    primary.take_pending()
    with sqlite3.connect(tmp_path / "p.db") as conn:
        rows = dict(conn.execute("SELECT key, value FROM rows"))
    assert rows == {
        "1": '[1, 3500, "", "say \\"hi\\" \\u00e9"]',
        "1:2": '[1, 2, 300, "Team"]',
        "c-1": '["c-1", 1, "sip:c-1", "plan", 5.5, [1, 2]]',
    }
