"""A front end's own store of the replicas it holds: Lync's local database on every front end.

One SQLite file in the front end's own data directory. It holds, for every routing group this
front end has a replica of, the group's persistent rows and the sequence number of the last
write applied (``seq``), so that a front end that restarts (process killed, actor restarted,
``StartFrontEnd``) brings its replicas back and says how fresh each is.

Contract:

* ``write_batches`` is one transaction for every batch it is given (a primary's writes taken
  for shipping, or one ``Replicate`` a secondary received): once it returns, the writes
  survive the process being killed (WAL, ``synchronous=NORMAL``; ``durability="full"`` also
  survives power loss, at an fsync per batch).
* Every row carries the ``seq`` of the batch that last wrote it, and a removed row stays as a
  tombstone with its ``seq``, so ``changes_since(group, s)`` returns exactly what a replica at
  ``s`` missed, as writes to apply. Rows of a batch all carry the batch's last ``seq``: a
  replica at ``s`` may be sent a little more than it missed (a harmless rewrite), never less.
* A group's own ``seq`` is the replica's *contiguous* mark (``GroupData.seq``): a secondary
  that got live writes past a gap (back before its catch-up landed) keeps its mark where its
  history has no hole, so after a restart it reports that, and catches up from there.
* A whole copy (``replace_group``: a copy from the primary or a reload from the back end)
  knows no history before it: ``changes_since`` answers ``None`` below that copy's ``seq``
  (its ``floor``), and the caller sends a whole copy instead.
* It also holds the endpoints registered here (``register`` before a sign-in is answered,
  ``deregister`` at a sign-out): those still there when the front end crashed were lost with
  it. The pool takes them when it notices the crash (``lost_with``, by the file's path: the
  front end may never come back), and each gets its call detail record, dated then; taking is
  one transaction, so a front end that comes back finds only those nobody took yet, and no
  record is written twice.
* One owner (the front end's event loop); no lock.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final

from enterprise.replica import ConferenceEnded, ContactDeleted, GroupData, Write
from pool.cdr import RegistrationRecord
from pool.sqlite_store import DURABILITY
from pool.store import ConferenceRow, ContactRow, PresenceRow

_json = json.JSONEncoder().encode  # json.dumps with its defaults, without the call's checks
SCHEMA_VERSION: Final = 1
#: the de-registration reason of endpoints lost with their front end
FRONT_END_FAILURE: Final = "front-end-failure"

_SCHEMA: Final = """
CREATE TABLE groups (
    grp INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    floor INTEGER NOT NULL
);
CREATE TABLE rows (
    grp INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    value TEXT,
    PRIMARY KEY (grp, kind, key)
);
CREATE INDEX rows_seq ON rows (grp, seq);
CREATE TABLE registrations (
    endpoint_id TEXT PRIMARY KEY,
    user_uri TEXT NOT NULL,
    device TEXT NOT NULL,
    registered_at REAL NOT NULL
);
"""

# row kinds: a contact entry, a manual presence row, a conference roster
_CONTACT: Final = "c"
_PRESENCE: Final = "p"
_CONFERENCE: Final = "f"


def _row(write: Write) -> tuple[str, str, str | None]:
    """(kind, key, value or None for a tombstone) of one write. The value is the row's fields
    as a JSON array (``dataclasses.astuple``'s deep copy cost a third of a secondary's
    processor while contact lists were provisioned)."""
    match write:
        case ContactRow(user_id, contact_id, level, group):
            return _CONTACT, f"{user_id}:{contact_id}", _json([user_id, contact_id, level, group])
        case ContactDeleted():
            return _CONTACT, f"{write.user_id}:{write.contact_id}", None
        case PresenceRow(user_id, availability, activity, note):
            return _PRESENCE, str(user_id), _json([user_id, availability, activity, note])
        case ConferenceRow(cid, organizer, uri, subject, started_at, members):
            return _CONFERENCE, cid, _json([cid, organizer, uri, subject, started_at, members])
        case ConferenceEnded():
            return _CONFERENCE, write.conversation_id, None


def _write_of(kind: str, key: str, value: str | None) -> Write:
    """The write that ``_row`` stored as (kind, key, value)."""
    if kind == _CONTACT:
        if value is None:
            user_id, contact_id = key.split(":")
            return ContactDeleted(int(user_id), int(contact_id))
        return ContactRow(*json.loads(value))
    if kind == _PRESENCE:
        if value is None:  # pragma: no cover - presence rows are never removed
            raise ValueError(f"presence row {key} has no value")
        return PresenceRow(*json.loads(value))
    if value is None:
        return ConferenceEnded(key)
    cid, organizer, conference_uri, subject, started_at, members = json.loads(value)
    return ConferenceRow(cid, organizer, conference_uri, subject, started_at, tuple(members))


def _writes_of(data: GroupData) -> Iterator[Write]:
    yield from data.contacts.rows()
    yield from data.presence.values()
    yield from data.conferences.values()


class LocalReplicaStore:
    """The replicas of one front end in the SQLite file at ``path`` (see the module docstring).
    RuntimeError if the file cannot use WAL or has a schema this code does not know."""

    def __init__(self, path: pathlib.Path | str, *, durability: str = "normal") -> None:
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {sorted(DURABILITY)}, not {durability!r}")
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: cannot use WAL (journal_mode is {mode!r})")
            conn.execute(f"PRAGMA synchronous={DURABILITY[durability]}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                conn.executescript(_SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")
            elif version != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: schema version {version}, this code knows {SCHEMA_VERSION}"
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self.transactions = 0  # committed, for tests and metrics

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
            self.transactions += 1
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # --- writes ---

    def write_batches(
        self,
        batches: Mapping[int, tuple[int, Iterable[Write]]],
        *,
        marks: Mapping[int, int] | None = None,
    ) -> None:
        """Apply ``{group: (seq, writes)}`` in one transaction; every row written gets ``seq``,
        and the group's mark becomes ``marks[group]`` (a secondary past a gap), else ``seq``."""
        if not batches:
            return
        with self._transaction() as conn:
            for group, (seq, writes) in batches.items():
                conn.executemany(
                    "INSERT OR REPLACE INTO rows (grp, kind, key, seq, value) VALUES (?,?,?,?,?)",
                    [(group, *_key_value(w, seq)) for w in writes],
                )
                mark = seq if marks is None else marks.get(group, seq)
                conn.execute(
                    "INSERT INTO groups (grp, seq, floor) VALUES (?, ?, 0) "
                    "ON CONFLICT (grp) DO UPDATE SET seq = max(seq, excluded.seq)",
                    (group, mark),
                )

    def replace_group(self, group: int, data: GroupData) -> None:
        """Hold ``data`` as the whole of ``group`` (a copy or a reload), in one transaction."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM rows WHERE grp = ?", (group,))
            conn.executemany(
                "INSERT INTO rows (grp, kind, key, seq, value) VALUES (?,?,?,?,?)",
                [(group, *_key_value(w, data.seq)) for w in _writes_of(data)],
            )
            conn.execute(
                "INSERT OR REPLACE INTO groups (grp, seq, floor) VALUES (?, ?, ?)",
                (group, data.seq, data.seq),
            )

    def drop(self, group: int) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM rows WHERE grp = ?", (group,))
            conn.execute("DELETE FROM groups WHERE grp = ?", (group,))

    def clear(self) -> None:
        """Forget every replica (a pool's first start loads every group from the back end)."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM rows")
            conn.execute("DELETE FROM groups")
            conn.execute("DELETE FROM registrations")

    def register(self, endpoint_id: str, user_uri: str, device: str, registered_at: float) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO registrations VALUES (?, ?, ?, ?)",
                (endpoint_id, user_uri, device, registered_at),
            )

    def deregister(self, endpoint_id: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM registrations WHERE endpoint_id = ?", (endpoint_id,))

    def take_registrations(self) -> list[tuple[str, str, str, float]]:
        """(endpoint id, user URI, device, registered at) of every endpoint registered here
        and never signed out, forgotten as they are returned."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT endpoint_id, user_uri, device, registered_at FROM registrations "
                "ORDER BY registered_at, endpoint_id"
            ).fetchall()
            conn.execute("DELETE FROM registrations")
        return [(str(e), str(u), str(d), float(t)) for e, u, d, t in rows]

    # --- reads ---

    def freshness(self) -> dict[int, int]:
        """``{group: seq}`` of every replica held."""
        rows = self._conn.execute("SELECT grp, seq FROM groups ORDER BY grp").fetchall()
        return {g: s for g, s in rows}

    def load(self) -> dict[int, GroupData]:
        """Every replica held, as the front end serves it (``seq`` its contiguous mark,
        ``top`` the highest sequence of a row it holds)."""
        out = {g: GroupData(seq, top=max(seq, self._top(g))) for g, seq in self.freshness().items()}
        for group, kind, key, value in self._conn.execute(
            "SELECT grp, kind, key, value FROM rows WHERE value IS NOT NULL ORDER BY grp, key"
        ):
            data = out.get(group)
            if data is not None:
                data.apply(_write_of(kind, key, value))
        return out

    def _top(self, group: int) -> int:
        row = self._conn.execute("SELECT max(seq) FROM rows WHERE grp = ?", (group,)).fetchone()
        return int(row[0] or 0)

    def changes_since(self, group: int, seq: int) -> tuple[int, list[Write]] | None:
        """``(the highest seq held, the writes a replica at seq missed)``, or ``None`` if
        this store cannot tell (it does not hold the group, or ``seq`` is older than its last
        whole copy: send a whole copy). A replica that applies them holds all this one does."""
        row = self._conn.execute("SELECT seq, floor FROM groups WHERE grp = ?", (group,)).fetchone()
        if row is None or seq < row[1]:
            return None
        writes = [
            _write_of(kind, key, value)
            for kind, key, value in self._conn.execute(
                "SELECT kind, key, value FROM rows WHERE grp = ? AND seq > ? ORDER BY seq",
                (group, seq),
            )
        ]
        return max(int(row[0]), self._top(group)), writes

    def close(self) -> None:
        self._conn.close()


def _key_value(write: Write, seq: int) -> tuple[str, str, int, str | None]:
    kind, key, value = _row(write)
    return kind, key, seq, value


def store_path(data_dir: pathlib.Path, fe_id: str) -> pathlib.Path:
    """Where front end ``fe_id`` keeps its local store, under the pool's data directory."""
    return data_dir / fe_id / "replicas.db"


def lost_with(
    fe_id: str, data_dir: pathlib.Path, noticed: float
) -> list[tuple[float, RegistrationRecord]]:
    """The call detail records of the endpoints still registered in front end ``fe_id``'s
    store (it crashed; the pool noticed at ``noticed``, wall clock), taken from it:
    ``front-end-failure`` registration rows. None if it has no store."""
    path = store_path(data_dir, fe_id)
    if not path.exists():
        return []
    store = LocalReplicaStore(path)
    try:
        lost = store.take_registrations()
    finally:
        store.close()
    return failure_records(fe_id, lost, noticed)


def failure_records(
    fe_id: str, lost: Iterable[tuple[str, str, str, float]], noticed: float
) -> list[tuple[float, RegistrationRecord]]:
    """``(time, record)`` of each endpoint in ``lost`` (``take_registrations``'s rows)."""
    return [
        (
            noticed,
            RegistrationRecord(
                uri, endpoint_id, device, fe_id, True, at, noticed, FRONT_END_FAILURE
            ),
        )
        for endpoint_id, uri, device, at in lost
    ]
