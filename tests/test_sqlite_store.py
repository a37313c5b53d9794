"""SqliteStore against real SQLite files: round trips, upserts, atomicity, crash durability."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from pool.cdr import (
    RECORD_TYPES,
    CdrRecord,
    ConferenceJoinRecord,
    ConferenceMessageCountRecord,
    ConferenceRecord,
    ImSessionRecord,
    RegistrationRecord,
)
from pool.sqlite_store import SCHEMA_VERSION, SqliteStore
from pool.store import ConferenceRow, ContactRow, PresenceRow, Store, UserRow

REPO = pathlib.Path(__file__).resolve().parents[1]

ALL_RECORDS: list[CdrRecord] = [
    ImSessionRecord(
        "s1", "sip:a@x.com", "ep-a", "sip:b@x.com", "ep-b", 10.25, 10.5, 200, 99.125, 3, 4
    ),
    ImSessionRecord(
        "s2",
        "sip:a@x.com",
        "ep-a",
        "sip:c@x.com",
        "",
        11.0,
        41.0,
        408,
        41.0,
        0,
        0,
        media_type="IM",
        escalated_to="sip:conf@x.com;gruu",
    ),
    ConferenceRecord("sip:conf@x.com;gruu", 12.0, 80.5, "sip:a@x.com", "pool1.x.com"),
    ConferenceJoinRecord("sip:conf@x.com;gruu", "sip:b@x.com", "ep-b", 12.5, 70.0),
    ConferenceMessageCountRecord("sip:conf@x.com;gruu", "sip:b@x.com", 17),
    RegistrationRecord("sip:a@x.com", "ep-a", "desktop", "fe1.x.com", True, 1.0, 2.0, "logout"),
    RegistrationRecord("sip:b@x.com", "ep-é", "phone", "fe2.x.com", False, 1.5, 0.0, ""),
]


def user(i: int, uri: str | None = None) -> UserRow:
    return UserRow(
        i,
        uri or f"sip:user{i}@x.com",
        f"User {i}",
        i % 7,
        bytes([i % 256]) * 16,
        b"\x00\xff" * 16,
        10_000,
    )


@pytest.fixture
def db(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "data" / "pool.db"


@pytest.fixture
def store(db: pathlib.Path) -> Iterator[SqliteStore]:
    s = SqliteStore(db)
    yield s
    s.close()


def raw(path: pathlib.Path) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(path))


# --- opening ---


def test_creates_parent_directories_and_schema(db: pathlib.Path) -> None:
    with SqliteStore(db):
        pass
    assert db.exists()
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"users", "contacts", "presence", "cdr", "cdr_time", "conferences"} <= tables


V1_SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, uri TEXT UNIQUE NOT NULL, display_name TEXT NOT NULL,
    routing_group INTEGER NOT NULL, salt BLOB NOT NULL, pw_hash BLOB NOT NULL,
    iterations INTEGER NOT NULL);
CREATE TABLE contacts (user_id INTEGER NOT NULL, contact_id INTEGER NOT NULL,
    access_level INTEGER NOT NULL, grp TEXT NOT NULL, PRIMARY KEY (user_id, contact_id));
CREATE TABLE presence (user_id INTEGER PRIMARY KEY, manual_availability INTEGER NOT NULL,
    manual_activity TEXT NOT NULL, note TEXT NOT NULL);
CREATE TABLE cdr (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, kind TEXT NOT NULL,
    data TEXT NOT NULL);
PRAGMA user_version=1;
"""


def test_version_1_file_gains_conferences_and_keeps_its_rows(db: pathlib.Path) -> None:
    db.parent.mkdir(parents=True)
    with raw(db) as conn:
        conn.executescript(V1_SCHEMA)
        conn.execute("INSERT INTO presence VALUES (7, 6500, 'busy', 'kept')")
        conn.commit()
    row = ConferenceRow(
        "c-g1-ab", 7, "sip:u7@x.com;gruu;opaque=app:conf:chat:id:ab", "s", 1.5, (7, 8)
    )
    with SqliteStore(db) as s:
        assert list(s.load_presence()) == [PresenceRow(7, 6500, "busy", "kept")]
        s.put_conference(row)
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    with SqliteStore(db) as s:
        assert list(s.load_conferences()) == [row]


def test_conference_rosters_round_trip(store: SqliteStore) -> None:
    store.fetch_size = 2
    rows = [
        ConferenceRow(f"c-g0-{i:02x}", i, f"uri{i}", "", float(i), (i, i + 1, i + 2))
        for i in range(5)
    ]
    for row in rows:
        store.put_conference(row)
    changed = dataclasses.replace(rows[1], members=(1, 9))
    store.put_conference(changed)
    store.delete_conference(rows[3].conversation_id, rows[3].organizer_id)
    store.delete_conference("c-g0-absent", 0)
    assert list(store.load_conferences()) == [rows[0], changed, rows[2], rows[4]]


@pytest.mark.parametrize(("durability", "level"), [("normal", 1), ("full", 2)])
def test_durability_sets_synchronous(db: pathlib.Path, durability: str, level: int) -> None:
    with SqliteStore(db, durability=durability) as s:
        assert s._db().execute("PRAGMA synchronous").fetchone()[0] == level
        assert s._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("bad", ["off", "NORMAL", "", "extra"])
def test_bad_durability(db: pathlib.Path, bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad)) as info:
        SqliteStore(db, durability=bad)
    assert "normal" in str(info.value)
    assert "full" in str(info.value)
    assert not db.exists()


def test_unknown_schema_version_refused(db: pathlib.Path) -> None:
    db.parent.mkdir(parents=True)
    with raw(db) as conn:
        conn.execute("PRAGMA user_version=7")
    with pytest.raises(RuntimeError, match="schema version 7"):
        SqliteStore(db)


def test_satisfies_store_protocol(db: pathlib.Path) -> None:
    s: Store = SqliteStore(db)  # checked by mypy
    s.close()


def test_close_is_idempotent(db: pathlib.Path) -> None:
    s = SqliteStore(db)
    s.close()
    s.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        s.put_presence(PresenceRow(1, 0, "", ""))


# --- round trips ---


def test_round_trip_through_reopen(db: pathlib.Path) -> None:
    users = [user(i) for i in range(1, 6)]
    contacts = [
        ContactRow(1, 2, 0, "Friends"),
        ContactRow(1, 3, 400, ""),
        ContactRow(2, 1, 300, "Work ✓"),
    ]
    presence = [PresenceRow(1, 6500, "in-a-meeting", "back at 3"), PresenceRow(4, 0, "", "")]
    with SqliteStore(db) as s:
        s.add_users(users)
        for c in contacts:
            s.put_contact(c)
        for p in presence:
            s.put_presence(p)
        ids = [s.add_cdr(100.0 + i, r) for i, r in enumerate(ALL_RECORDS)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {type(r) for r in ALL_RECORDS} == set(RECORD_TYPES.values())

    with SqliteStore(db) as s:
        assert list(s.load_users()) == users
        assert sorted(s.load_contacts(), key=lambda c: (c.user_id, c.contact_id)) == contacts
        assert list(s.load_presence()) == presence
        stored = list(s.list_cdr(0.0))
    assert [r.id for r in stored] == ids
    assert [r.time for r in stored] == [100.0 + i for i in range(len(ALL_RECORDS))]
    assert [r.record for r in stored] == ALL_RECORDS
    for got, want in zip(stored, ALL_RECORDS, strict=True):
        assert type(got.record) is type(want)


def test_loaders_page_through_many_rows(store: SqliteStore) -> None:
    store.fetch_size = 7
    users = [user(i) for i in range(1, 51)]
    store.add_users(users)
    for i in range(1, 51):
        store.put_contact(ContactRow(i % 5, i, i, f"g{i}"))
        store.put_presence(PresenceRow(i, i, "a", "n"))
    assert list(store.load_users()) == users
    contacts = list(store.load_contacts())
    assert len(contacts) == 50
    assert contacts == sorted(contacts, key=lambda c: (c.user_id, c.contact_id))
    assert [p.user_id for p in store.load_presence()] == list(range(1, 51))


def test_add_users_large_batch(store: SqliteStore) -> None:
    store.add_users(user(i) for i in range(1, 80_001))
    assert sum(1 for _ in store.load_users()) == 80_000


# --- upserts and deletes ---


def test_put_contact_upserts_and_delete(store: SqliteStore) -> None:
    store.put_contact(ContactRow(1, 2, 200, "a"))
    store.put_contact(ContactRow(1, 3, 200, "a"))
    store.put_contact(ContactRow(1, 2, 400, "b"))
    assert list(store.load_contacts()) == [ContactRow(1, 2, 400, "b"), ContactRow(1, 3, 200, "a")]
    store.delete_contact(1, 2)
    store.delete_contact(1, 2)  # absent: no error
    store.delete_contact(9, 9)
    assert list(store.load_contacts()) == [ContactRow(1, 3, 200, "a")]


def test_put_presence_upserts(store: SqliteStore) -> None:
    store.put_presence(PresenceRow(1, 3500, "", "hello"))
    store.put_presence(PresenceRow(2, 6500, "busy", ""))
    store.put_presence(PresenceRow(1, 0, "", ""))
    assert list(store.load_presence()) == [
        PresenceRow(1, 0, "", ""),
        PresenceRow(2, 6500, "busy", ""),
    ]


# --- call detail records ---


def test_list_cdr_orders_by_time_then_id_and_filters(store: SqliteStore) -> None:
    rec = ConferenceMessageCountRecord("sip:c@x.com", "sip:a@x.com", 1)
    times = [5.0, 1.0, 3.0, 3.0, 9.5, 1.0, 3.0]
    ids = [store.add_cdr(t, dataclasses.replace(rec, message_count=i)) for i, t in enumerate(times)]
    expected = sorted(zip(times, ids, strict=True))
    got = [(r.time, r.id) for r in store.list_cdr(0.0)]
    assert got == expected
    for r in store.list_cdr(0.0):
        assert isinstance(r.record, ConferenceMessageCountRecord)
        assert r.record.message_count == ids.index(r.id)
    assert [(r.time, r.id) for r in store.list_cdr(3.0)] == [e for e in expected if e[0] >= 3.0]
    assert [r.time for r in store.list_cdr(9.5)] == [9.5]
    assert list(store.list_cdr(9.6)) == []
    store.fetch_size = 2
    assert [(r.time, r.id) for r in store.list_cdr(1.0)] == expected


def test_list_cdr_survives_writes_while_iterating(store: SqliteStore) -> None:
    store.fetch_size = 3
    for i in range(10):
        store.add_cdr(float(i), ALL_RECORDS[i % len(ALL_RECORDS)])
    seen = []
    for r in store.list_cdr(0.0):
        seen.append(r.time)
        if r.time < 10:
            # a later record appears in this iteration, an earlier one does not
            store.add_cdr(r.time + 100, ALL_RECORDS[0])
            store.add_cdr(-1.0, ALL_RECORDS[1])
            store.put_presence(PresenceRow(1, 0, "", str(r.time)))
    assert seen == [float(i) for i in range(10)] + [float(i) + 100 for i in range(10)]
    assert sum(1 for _ in store.list_cdr(-1.0)) == 30


def test_add_cdr_rejects_non_record(store: SqliteStore) -> None:
    with pytest.raises(TypeError, match="str"):
        store.add_cdr(1.0, "nope")  # type: ignore[arg-type]
    assert list(store.list_cdr(0.0)) == []


# --- all-or-nothing ---


def test_add_users_duplicate_uri_in_batch_is_all_or_nothing(store: SqliteStore) -> None:
    store.add_users([user(1)])
    batch = [user(2), user(3), user(4, uri="sip:user2@x.com"), user(5)]
    with pytest.raises(sqlite3.IntegrityError):
        store.add_users(batch)
    assert list(store.load_users()) == [user(1)]
    # the store is usable afterwards
    store.add_users([user(2)])
    assert [u.id for u in store.load_users()] == [1, 2]


def test_add_users_duplicate_of_stored_row_is_all_or_nothing(store: SqliteStore) -> None:
    store.add_users([user(1)])
    with pytest.raises(sqlite3.IntegrityError):
        store.add_users([user(2), user(1, uri="sip:other@x.com")])
    assert list(store.load_users()) == [user(1)]


def test_add_users_failing_iterable_is_all_or_nothing(store: SqliteStore) -> None:
    def rows() -> Iterator[UserRow]:
        yield user(1)
        yield user(2)
        raise OSError("source broke")

    with pytest.raises(OSError, match="source broke"):
        store.add_users(rows())
    assert list(store.load_users()) == []
    store.put_contact(ContactRow(1, 2, 0, ""))
    assert len(list(store.load_contacts())) == 1


def test_failed_write_survives_reopen_as_nothing(db: pathlib.Path) -> None:
    with SqliteStore(db) as s:
        s.add_users([user(1)])
        with pytest.raises(sqlite3.IntegrityError):
            s.add_users([user(2), user(2)])
    with SqliteStore(db) as s:
        assert list(s.load_users()) == [user(1)]


# --- crash durability ---

CHILD = textwrap.dedent("""
    import sys, time
    from pool.cdr import ConferenceRecord
    from pool.sqlite_store import SqliteStore
    from pool.store import ContactRow, PresenceRow, UserRow

    store = SqliteStore(sys.argv[1], durability=sys.argv[2])
    store.add_users([UserRow(1, "sip:a@x.com", "A", 0, b"s", b"h", 1),
                     UserRow(2, "sip:b@x.com", "B", 1, b"s", b"h", 1)])
    store.put_contact(ContactRow(1, 2, 400, "Friends"))
    store.put_presence(PresenceRow(1, 6500, "busy", "do not disturb"))
    rid = store.add_cdr(42.5, ConferenceRecord("sip:c@x.com", 1.0, 2.0, "sip:a@x.com", "p"))

    def never_acknowledged():
        yield UserRow(3, "sip:c@x.com", "C", 0, b"s", b"h", 1)
        print("ok", rid, flush=True)  # killed here, inside add_users' transaction
        time.sleep(60)
        yield UserRow(4, "sip:d@x.com", "D", 0, b"s", b"h", 1)

    store.add_users(never_acknowledged())
""")


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_acknowledged_writes_survive_sigkill(db: pathlib.Path, durability: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p
        ),
    }
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), durability],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    word, rid = line.split()
    assert word == "ok"
    # the data is in the write-ahead log, never checkpointed: reopening must recover it
    wal = db.with_name(db.name + "-wal")
    assert wal.exists()
    assert wal.stat().st_size > 0

    with SqliteStore(db) as s:
        assert [u.uri for u in s.load_users()] == ["sip:a@x.com", "sip:b@x.com"]
        assert list(s.load_contacts()) == [ContactRow(1, 2, 400, "Friends")]
        assert list(s.load_presence()) == [PresenceRow(1, 6500, "busy", "do not disturb")]
        cdrs = list(s.list_cdr(0.0))
        assert [(r.id, r.time) for r in cdrs] == [(int(rid), 42.5)]
        assert cdrs[0].record == ConferenceRecord("sip:c@x.com", 1.0, 2.0, "sip:a@x.com", "p")
        # the store is writable after the crash (the dead writer's lock is gone)
        s.add_users([UserRow(3, "sip:c@x.com", "C", 0, b"s", b"h", 1)])
        assert len(list(s.load_users())) == 3
