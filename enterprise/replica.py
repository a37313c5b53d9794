"""Routing-group replicas: the persistent data of a group as one front end holds it.

Every front end holding a replica of a group (its primary or a secondary) keeps a
``GroupData``: the group's contact entries, manual presence rows and conference rosters (of
conferences its users organize), and the sequence number of the last write it applied. The
primary's engine writes through ``ReplicatingStore``, which applies each write to the local
copy at once and queues it for the group's secondaries (``take_pending``) and for the lazy
backup to the back-end store (``take_dirty``). Transient data (machine and idle state,
calendar, phone, IM text) never comes here.

With a ``LocalReplicaStore`` (``enterprise.local_store``), every replica is also kept on the
front end's own disk: a primary's writes when they are taken for shipping (so before the call
that made them is acknowledged), a secondary's when it applies them (before it answers), whole
copies when installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from pool.cdr import CdrRecord, StoredRecord
from pool.directory import ContactEntry, contact_entry
from pool.pickling import by_arguments
from pool.store import ConferenceRow, ContactRow, PresenceRow, UserRow

if TYPE_CHECKING:
    from enterprise.local_store import LocalReplicaStore

K = TypeVar("K")
V = TypeVar("V")


@by_arguments
@dataclass(frozen=True, slots=True)
class ContactDeleted:
    """A write: ``user_id`` removed ``contact_id`` from their contact list."""

    user_id: int
    contact_id: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.user_id, self.contact_id)


@by_arguments
@dataclass(frozen=True, slots=True)
class ConferenceEnded:
    """A write: the conference ``conversation_id`` ended (its roster is gone)."""

    conversation_id: str


#: one replicated write: a contact set or deleted, a presence row set, a conference roster
#: set or ended
Write: TypeAlias = ContactRow | ContactDeleted | PresenceRow | ConferenceRow | ConferenceEnded


class ContactTable(MutableMapping[tuple[int, int], ContactRow]):
    """A group's contact entries by ``(owner, contact)``, kept as each owner's list of shared
    ``ContactEntry`` values (``pool.directory.contact_entry``), the way the engine keeps a
    user's list: a row object per entry and a tuple key cost 3.4 times the memory, and a
    replica holds every entry of its group (Lync's largest pool: 6.4 million entries, each on
    three front ends). Rows are made when read."""

    __slots__ = ("_len", "_lists")

    def __init__(self, rows: Iterable[ContactRow] = ()) -> None:
        self._lists: dict[int, dict[int, ContactEntry]] = {}
        self._len = 0
        for row in rows:
            self[(row.user_id, row.contact_id)] = row

    def __getitem__(self, key: tuple[int, int]) -> ContactRow:
        owner, contact = key
        entry = self._lists[owner][contact]
        return ContactRow(owner, contact, entry.access_level, entry.group)

    def __setitem__(self, key: tuple[int, int], row: ContactRow) -> None:
        owner, contact = key
        entries = self._lists.get(owner)
        if entries is None:
            entries = self._lists[owner] = {}
        if contact not in entries:
            self._len += 1
        entries[contact] = contact_entry(row.access_level, row.group)

    def __delitem__(self, key: tuple[int, int]) -> None:
        owner, contact = key
        entries = self._lists[owner]
        del entries[contact]
        self._len -= 1
        if not entries:  # no empty lists: equal tables hold equal ``_lists``
            del self._lists[owner]

    def __contains__(self, key: object) -> bool:
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        entries = self._lists.get(key[0])
        return entries is not None and key[1] in entries

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for owner, entries in self._lists.items():
            for contact in entries:
                yield (owner, contact)

    def __len__(self) -> int:
        return self._len

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ContactTable):
            return self._lists == other._lists
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dict

    def __repr__(self) -> str:
        return f"ContactTable({list(self.values())!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # the lists as they are: pickle writes each shared entry once per message
        return (_contact_table, (self._lists, self._len))

    def rows(self) -> Iterator[ContactRow]:
        """Every entry as a row (``values()``, without a lookup per key)."""
        for owner, entries in self._lists.items():
            for contact, entry in entries.items():
                yield ContactRow(owner, contact, entry.access_level, entry.group)

    def copy(self) -> ContactTable:
        return _contact_table({o: dict(e) for o, e in self._lists.items()}, self._len)


def _contact_table(lists: dict[int, dict[int, ContactEntry]], count: int) -> ContactTable:
    table = ContactTable()
    table._lists = lists
    table._len = count
    return table


@dataclass(slots=True)
class GroupData:
    """One replica of a group. ``seq`` is its *contiguous* high-water mark: it holds every
    write of the primary's stream up to ``seq``, without a gap (what it reports as its
    freshness, and what a catch-up starts from). ``top`` is the highest sequence it applied:
    above ``seq`` when writes arrived past a gap (a returning replica gets live writes before
    its catch-up lands)."""

    seq: int = 0
    contacts: ContactTable = field(default_factory=ContactTable)
    presence: dict[int, PresenceRow] = field(default_factory=dict)
    conferences: dict[str, ConferenceRow] = field(default_factory=dict)
    top: int = 0

    def apply(self, write: Write) -> None:
        match write:
            case ContactRow():
                self.contacts[(write.user_id, write.contact_id)] = write
            case ContactDeleted():
                self.contacts.pop(write.key, None)
            case PresenceRow():
                self.presence[write.user_id] = write
            case ConferenceRow():
                self.conferences[write.conversation_id] = write
            case ConferenceEnded():
                self.conferences.pop(write.conversation_id, None)

    def snapshot(self) -> GroupData:
        """A copy, as a whole copy from this replica: its holder has nothing before it, so
        it is contiguous up to everything this replica applied."""
        seq = max(self.seq, self.top)
        return GroupData(
            seq, self.contacts.copy(), dict(self.presence), dict(self.conferences), seq
        )

    def receive(self, since: int, seq: int, writes: Iterable[Write]) -> None:
        """Apply a batch from the primary holding its writes after ``since`` up to ``seq``:
        the mark rises only when the batch starts at or below it (no gap)."""
        for write in writes:
            self.apply(write)
        if since <= self.seq:
            self.seq = max(self.seq, seq)
        self.top = max(self.top, self.seq, seq)

    def next_seq(self) -> int:
        """Number the next write made here (this is the primary): after everything held, so
        no number is used twice even when this replica was promoted with a gap."""
        self.seq = max(self.seq, self.top) + 1
        self.top = self.seq
        return self.seq

    def lacking_from(self, backup: GroupData) -> int:
        """Rows (contact entries, presence rows, conference rosters) this replica holds that
        ``backup`` lacks or holds otherwise, a removal included: the writes a reload from
        ``backup`` would lose."""
        return (
            _differing(self.contacts, backup.contacts)
            + _differing(self.presence, backup.presence)
            + _differing(self.conferences, backup.conferences)
        )


def _differing(mine: Mapping[K, V], theirs: Mapping[K, V]) -> int:
    return sum(1 for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


@dataclass(slots=True)
class Dirty:
    """What changed in a group since its last backup (keys; values are read at backup time)."""

    contacts: set[tuple[int, int]] = field(default_factory=set)
    presence: set[int] = field(default_factory=set)
    conferences: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Backup:
    """A group's changes for the back-end store."""

    group: int
    contacts: tuple[ContactRow, ...]
    deleted: tuple[ContactDeleted, ...]
    presence: tuple[PresenceRow, ...]
    conferences: tuple[ConferenceRow, ...] = ()
    ended_conferences: tuple[ConferenceEnded, ...] = ()


class ReplicatingStore:
    """The engine's ``Store`` on an Enterprise front end (see the module docstring).

    Loading and user rows are the node's business (the directory comes from the fabric), so
    those methods are empty; call detail records queue for the back-end store.
    """

    def __init__(
        self,
        group_of: Callable[[int], int],
        local: LocalReplicaStore | None = None,
        *,
        on_write: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_write`` is called after every write (the front end ships it to the
        secondaries soon)."""
        self._group_of = group_of
        self.local = local
        self.groups: dict[int, GroupData] = local.load() if local is not None else {}
        self._pending: dict[int, list[Write]] = {}
        self._dirty: dict[int, Dirty] = {}
        self.cdrs: list[tuple[float, CdrRecord]] = []
        self._on_write = on_write
        self.writes = 0  # writes taken so far (replicas applied from a primary do not count)

    def group(self, group: int) -> GroupData:
        data = self.groups.get(group)
        if data is None:
            data = self.groups[group] = GroupData()
        return data

    def _write(self, user_id: int, write: Write) -> None:
        g = self._group_of(user_id)
        data = self.group(g)
        data.apply(write)
        data.next_seq()
        self._pending.setdefault(g, []).append(write)
        dirty = self._dirty.setdefault(g, Dirty())
        match write:
            case ContactRow() | ContactDeleted():
                dirty.contacts.add((write.user_id, write.contact_id))
            case PresenceRow():
                dirty.presence.add(write.user_id)
            case ConferenceRow() | ConferenceEnded():
                dirty.conferences.add(write.conversation_id)
        self.writes += 1
        self._on_write()

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def take_pending(self) -> dict[int, tuple[int, list[Write]]]:
        """Writes not yet shipped to secondaries, by group, with the group's sequence (the
        batch starts after ``seq - len(writes)``: each write takes the next number)."""
        pending, self._pending = self._pending, {}
        batches = {g: (self.groups[g].seq, writes) for g, writes in pending.items()}
        if self.local is not None:
            self.local.write_batches(batches)
        return batches

    def apply_replicated(self, group: int, since: int, seq: int, writes: Iterable[Write]) -> None:
        """Writes from ``group``'s primary after ``since`` up to its ``seq`` (this is a
        secondary): durable here before this returns. The replica's mark (``GroupData.seq``)
        rises only if it held everything up to ``since`` (``GroupData.receive``)."""
        writes = tuple(writes)
        data = self.group(group)
        data.receive(since, seq, writes)
        if self.local is not None:
            self.local.write_batches({group: (seq, writes)}, marks={group: data.seq})

    def install(self, group: int, data: GroupData) -> None:
        """Hold ``data`` as the whole of ``group`` (a copy or a reload)."""
        self.groups[group] = data
        self._pending.pop(group, None)
        if self.local is not None:
            self.local.replace_group(group, data)

    def changes_since(self, group: int, seq: int) -> tuple[int, list[Write]] | None:
        """What a replica of ``group`` at ``seq`` missed (``LocalReplicaStore.changes_since``);
        ``None`` without a local store or when only a whole copy will do."""
        if self.local is None:
            return None
        self.take_pending_for(group)
        return self.local.changes_since(group, seq)

    def take_pending_for(self, group: int) -> None:
        """Make ``group``'s pending writes durable here now (they still ship as usual)."""
        writes = self._pending.get(group)
        if writes and self.local is not None:
            self.local.write_batches({group: (self.groups[group].seq, list(writes))})

    def take_dirty(self) -> list[Backup]:
        dirty, self._dirty = self._dirty, {}
        out = []
        for g, d in dirty.items():
            data = self.group(g)
            rows = tuple(data.contacts[k] for k in sorted(d.contacts) if k in data.contacts)
            deleted = tuple(
                ContactDeleted(*k) for k in sorted(d.contacts) if k not in data.contacts
            )
            presence = tuple(data.presence[u] for u in sorted(d.presence) if u in data.presence)
            confs = sorted(d.conferences)
            conferences = tuple(data.conferences[c] for c in confs if c in data.conferences)
            ended = tuple(ConferenceEnded(c) for c in confs if c not in data.conferences)
            out.append(Backup(g, rows, deleted, presence, conferences, ended))
        return out

    def registered(self, endpoint_id: str, user_uri: str, device: str, at: float) -> None:
        """An endpoint signed in here (kept on disk: if this front end crashes, its call
        detail record is written when it comes back)."""
        if self.local is not None:
            self.local.register(endpoint_id, user_uri, device, at)

    def deregistered(self, endpoint_id: str) -> None:
        if self.local is not None:
            self.local.deregister(endpoint_id)

    def drop(self, group: int) -> None:
        self.groups.pop(group, None)
        self._pending.pop(group, None)
        self._dirty.pop(group, None)
        if self.local is not None:
            self.local.drop(group)

    # --- the Store protocol ---

    def load_users(self) -> Iterator[UserRow]:
        return iter(())

    def load_contacts(self) -> Iterator[ContactRow]:
        return iter(())

    def load_presence(self) -> Iterator[PresenceRow]:
        return iter(())

    def load_conferences(self) -> Iterator[ConferenceRow]:
        return iter(())

    def put_conference(self, row: ConferenceRow) -> None:
        self._write(row.organizer_id, row)

    def delete_conference(self, conversation_id: str, organizer_id: int) -> None:
        self._write(organizer_id, ConferenceEnded(conversation_id))

    def add_users(self, rows: Iterable[UserRow]) -> None:
        pass

    def put_contact(self, row: ContactRow) -> None:
        self._write(row.user_id, row)

    def put_contacts(self, rows: Iterable[ContactRow]) -> None:
        for row in rows:
            self._write(row.user_id, row)

    def delete_contact(self, user_id: int, contact_id: int) -> None:
        self._write(user_id, ContactDeleted(user_id, contact_id))

    def put_presence(self, row: PresenceRow) -> None:
        self._write(row.user_id, row)

    def add_cdr(self, time: float, record: CdrRecord) -> int:
        self.cdrs.append((time, record))
        return 0

    def list_cdr(self, since: float) -> Iterator[StoredRecord]:
        return iter(())

    def close(self) -> None:
        pass
