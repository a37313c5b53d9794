"""The Store on one SQLite file (stdlib ``sqlite3`` only).

Contract:

* Every write method is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): it either
  commits entirely before it returns, or raises and leaves the file as it was.
* Once a write method has returned, its data survives the process being killed (``kill -9``)
  with ``durability="normal"`` (WAL, ``synchronous=NORMAL``), and also survives power loss
  with ``durability="full"`` (WAL, ``synchronous=FULL``).
* Readers (``load_*``, ``list_cdr``) page through their table by key in bounded chunks, so
  they never hold a whole table in memory and leave no statement open between chunks: writes
  on the same store may be made while an iterator is only partly consumed.
* One connection, shared by every caller; calls are serialized by a lock, so the store may be
  used from more than one thread, but it is meant for one owner (the engine).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from pool.cdr import KIND_OF, RECORD_TYPES, CdrRecord, StoredRecord
from pool.store import ConferenceRow, ContactRow, PresenceRow, UserRow

SCHEMA_VERSION = 2

DURABILITY: dict[str, str] = {"normal": "NORMAL", "full": "FULL"}

_SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    uri TEXT UNIQUE NOT NULL,
    display_name TEXT NOT NULL,
    routing_group INTEGER NOT NULL,
    salt BLOB NOT NULL,
    pw_hash BLOB NOT NULL,
    iterations INTEGER NOT NULL
);
CREATE TABLE contacts (
    user_id INTEGER NOT NULL,
    contact_id INTEGER NOT NULL,
    access_level INTEGER NOT NULL,
    grp TEXT NOT NULL,
    PRIMARY KEY (user_id, contact_id)
);
CREATE TABLE presence (
    user_id INTEGER PRIMARY KEY,
    manual_availability INTEGER NOT NULL,
    manual_activity TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE cdr (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX cdr_time ON cdr (time);
"""

#: what each older schema version needs to become the current one
_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE conferences (
    conversation_id TEXT PRIMARY KEY,
    organizer_id INTEGER NOT NULL,
    conference_uri TEXT NOT NULL,
    subject TEXT NOT NULL,
    started_at REAL NOT NULL,
    members TEXT NOT NULL
);
""",
}


class SqliteStore:
    """A Store in the SQLite file at ``path`` (created, with its parent directories, if absent).

    ``durability`` is ``"normal"`` (survives a process crash) or ``"full"`` (survives power
    loss). Raises ValueError for any other value, and RuntimeError if the file cannot be put in
    WAL mode or carries a schema version this code does not know.
    """

    #: Rows fetched per query by the readers; bounds their memory.
    fetch_size: int = 1000

    def __init__(self, path: pathlib.Path | str, *, durability: str = "normal") -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {sorted(DURABILITY)}, not {durability!r}")
        self.path = pathlib.Path(path)
        self.durability = durability
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: cannot use WAL (journal_mode is {mode!r})")
            conn.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
            self._conn: sqlite3.Connection | None = conn
            self._migrate()
        except BaseException:
            self._conn = None
            conn.close()
            raise

    # --- plumbing ---

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError(f"{self.path}: the store is closed")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and a write transaction; commit on success, roll back on any error."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                # Some errors (disk full, I/O) make SQLite roll back by itself.
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error as rollback_error:
                        exc.add_note(f"and the rollback failed: {rollback_error}")
                raise

    def _migrate(self) -> None:
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                scripts = [_SCHEMA, *(_MIGRATIONS[v] for v in sorted(_MIGRATIONS))]
            elif version < SCHEMA_VERSION:
                scripts = [_MIGRATIONS[v] for v in range(version, SCHEMA_VERSION)]
            else:
                scripts = []
            for script in scripts:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            if scripts:
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: schema version {version}, this code knows {SCHEMA_VERSION}"
                )

    def _pages(
        self,
        first: str,
        after: str,
        first_args: tuple[Any, ...],
        key: Callable[[tuple[Any, ...]], tuple[Any, ...]],
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of ``first``, then of ``after`` with the last row's key, ``fetch_size`` at a time.

        Both queries end in ``LIMIT ?`` and order by the key; each chunk is read completely
        before it is yielded, so no statement stays open while the caller holds the iterator.
        """
        sql, args = first, first_args
        while True:
            size = max(1, self.fetch_size)
            with self._lock:
                rows: list[tuple[Any, ...]] = self._db().execute(sql, (*args, size)).fetchall()
            yield from rows
            if len(rows) < size:
                return
            sql, args = after, (*first_args, *key(rows[-1]))

    # --- reads ---

    def load_users(self) -> Iterator[UserRow]:
        """Every user, by id."""
        cols = "id, uri, display_name, routing_group, salt, pw_hash, iterations"
        for r in self._pages(
            f"SELECT {cols} FROM users ORDER BY id LIMIT ?",
            f"SELECT {cols} FROM users WHERE id > ? ORDER BY id LIMIT ?",
            (),
            lambda r: (r[0],),
        ):
            yield UserRow(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), r[6])

    def load_contacts(self) -> Iterator[ContactRow]:
        """Every contact, by (user_id, contact_id)."""
        cols = "user_id, contact_id, access_level, grp"
        order = "ORDER BY user_id, contact_id LIMIT ?"
        for r in self._pages(
            f"SELECT {cols} FROM contacts {order}",
            f"SELECT {cols} FROM contacts WHERE (user_id, contact_id) > (?, ?) {order}",
            (),
            lambda r: (r[0], r[1]),
        ):
            yield ContactRow(r[0], r[1], r[2], r[3])

    def load_presence(self) -> Iterator[PresenceRow]:
        """Every stored presence row, by user_id."""
        cols = "user_id, manual_availability, manual_activity, note"
        for r in self._pages(
            f"SELECT {cols} FROM presence ORDER BY user_id LIMIT ?",
            f"SELECT {cols} FROM presence WHERE user_id > ? ORDER BY user_id LIMIT ?",
            (),
            lambda r: (r[0],),
        ):
            yield PresenceRow(r[0], r[1], r[2], r[3])

    def load_conferences(self) -> Iterator[ConferenceRow]:
        """Every stored conference roster, by conversation id."""
        cols = "conversation_id, organizer_id, conference_uri, subject, started_at, members"
        for r in self._pages(
            f"SELECT {cols} FROM conferences ORDER BY conversation_id LIMIT ?",
            f"SELECT {cols} FROM conferences WHERE conversation_id > ? "
            "ORDER BY conversation_id LIMIT ?",
            (),
            lambda r: (r[0],),
        ):
            yield ConferenceRow(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])))

    def list_cdr(self, since: float) -> Iterator[StoredRecord]:
        """Records with ``time >= since``, ordered by (time, id).

        Records added while the iterator is open appear in it if they sort after the last
        record already yielded.
        """
        cols = "id, time, kind, data"
        for rid, time, kind, data in self._pages(
            f"SELECT {cols} FROM cdr WHERE time >= ? ORDER BY time, id LIMIT ?",
            f"SELECT {cols} FROM cdr WHERE time >= ? AND (time, id) > (?, ?) "
            "ORDER BY time, id LIMIT ?",
            (since,),
            lambda r: (r[1], r[0]),
        ):
            cls = RECORD_TYPES.get(kind)
            if cls is None:
                raise ValueError(f"{self.path}: CDR {rid} has unknown kind {kind!r}")
            yield StoredRecord(rid, time, cls(**json.loads(data)))

    # --- writes ---

    #: a bulk write of more rows than this checkpoints the WAL at once, so the checkpoint (an
    #: fsync of the whole batch) happens during provisioning, not under load later
    BULK_ROWS = 1000

    def _checkpoint_after(self, rows: int) -> None:
        if rows > self.BULK_ROWS:
            with self._lock:
                self._db().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def add_users(self, rows: Iterable[UserRow]) -> None:
        """Insert every row in one transaction; a duplicate id or uri (in the batch or already
        stored) raises sqlite3.IntegrityError and inserts none of them."""
        rows = list(rows)
        self._write_users(rows)
        self._checkpoint_after(len(rows))

    def _write_users(self, rows: list[UserRow]) -> None:
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO users (id, uri, display_name, routing_group, salt, pw_hash,"
                " iterations) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (r.id, r.uri, r.display_name, r.routing_group, r.salt, r.pw_hash, r.iterations)
                    for r in rows
                ),
            )

    _UPSERT_CONTACT = (
        "INSERT INTO contacts (user_id, contact_id, access_level, grp)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, contact_id) DO UPDATE SET"
        " access_level = excluded.access_level, grp = excluded.grp"
    )

    def put_contact(self, row: ContactRow) -> None:
        """Insert the contact, or replace the access level and group of an existing one."""
        self.put_contacts([row])

    def put_contacts(self, rows: Iterable[ContactRow]) -> None:
        """``put_contact`` for many rows, in one transaction: all or none."""
        rows = list(rows)
        with self._transaction() as conn:
            conn.executemany(
                self._UPSERT_CONTACT,
                ((r.user_id, r.contact_id, r.access_level, r.group) for r in rows),
            )
        self._checkpoint_after(len(rows))

    def delete_contact(self, user_id: int, contact_id: int) -> None:
        """Remove the contact if present (absent is not an error)."""
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM contacts WHERE user_id = ? AND contact_id = ?", (user_id, contact_id)
            )

    def put_presence(self, row: PresenceRow) -> None:
        """Insert or replace the user's manual state and note."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO presence (user_id, manual_availability, manual_activity, note)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET"
                " manual_availability = excluded.manual_availability,"
                " manual_activity = excluded.manual_activity, note = excluded.note",
                (row.user_id, row.manual_availability, row.manual_activity, row.note),
            )

    def put_conference(self, row: ConferenceRow) -> None:
        """Insert or replace a conference's roster."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO conferences (conversation_id, organizer_id,"
                " conference_uri, subject, started_at, members) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    row.conversation_id,
                    row.organizer_id,
                    row.conference_uri,
                    row.subject,
                    row.started_at,
                    json.dumps(list(row.members)),
                ),
            )

    def delete_conference(self, conversation_id: str, organizer_id: int) -> None:
        """Forget a conference's roster (absent is not an error)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM conferences WHERE conversation_id = ?", (conversation_id,))

    def add_cdr(self, time: float, record: CdrRecord) -> int:
        """Append the record at ``time``; returns its id (ids increase and are never reused).
        Raises TypeError for an object that is not one of pool.cdr's record types."""
        kind = KIND_OF.get(type(record))
        if kind is None:
            raise TypeError(f"not a CDR record type: {type(record).__name__}")
        data = json.dumps(dataclasses.asdict(record), separators=(",", ":"))
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT INTO cdr (time, kind, data) VALUES (?, ?, ?)", (time, kind, data)
            )
            rid = cur.lastrowid
        assert rid is not None
        return rid

    # --- lifetime ---

    def close(self) -> None:
        """Close the connection; later calls do nothing, other methods then raise."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
