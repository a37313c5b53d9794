"""Where persistent data lives: the interface, and an in-memory fake for domain tests.

Persistent (SPEC section 2): the directory of users with their password hashes, contacts and
access levels, the manual presence state and note, conference rosters, and the call detail
records. The engine
writes here *before* it changes memory and acknowledges, so a failed write changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pool.cdr import CdrRecord, StoredRecord
from pool.pickling import by_arguments

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    uri: str
    display_name: str
    routing_group: int
    salt: bytes
    pw_hash: bytes
    iterations: int


@by_arguments
@dataclass(frozen=True, slots=True)
class ContactRow:
    user_id: int
    contact_id: int
    access_level: int  # 0: the default by domain
    group: str


@by_arguments
@dataclass(frozen=True, slots=True)
class PresenceRow:
    user_id: int
    manual_availability: int  # 0: no manual state
    manual_activity: str
    note: str


@by_arguments
@dataclass(frozen=True, slots=True)
class ConferenceRow:
    """A conference's roster: who is in it or invited to it (not what was said, nor who is
    connected right now). Kept with the organizer's routing group, so the conference can be
    restored on that group's next primary if its front end fails."""

    conversation_id: str
    organizer_id: int
    conference_uri: str
    subject: str
    started_at: float
    members: tuple[int, ...]  # user ids, the organizer included while a member


class Rosters(Protocol):
    """Where conference rosters persist (the IMMCU's; a ``Store`` is one)."""

    def put_conference(self, row: ConferenceRow) -> None: ...

    def delete_conference(self, conversation_id: str, organizer_id: int) -> None: ...


class Store(Protocol):
    def load_users(self) -> Iterator[UserRow]: ...

    def load_contacts(self) -> Iterator[ContactRow]: ...

    def load_presence(self) -> Iterator[PresenceRow]: ...

    def add_users(self, rows: Iterable[UserRow]) -> None: ...

    def put_contact(self, row: ContactRow) -> None: ...

    def put_contacts(self, rows: Iterable[ContactRow]) -> None: ...

    def delete_contact(self, user_id: int, contact_id: int) -> None: ...

    def put_presence(self, row: PresenceRow) -> None: ...

    def load_conferences(self) -> Iterator[ConferenceRow]: ...

    def put_conference(self, row: ConferenceRow) -> None: ...

    def delete_conference(self, conversation_id: str, organizer_id: int) -> None: ...

    def add_cdr(self, time: float, record: CdrRecord) -> int: ...

    def list_cdr(self, since: float) -> Iterator[StoredRecord]: ...

    def close(self) -> None: ...


class MemoryStore:
    """A Store in dicts, for domain tests. ``fail_next`` makes the next write raise."""

    def __init__(self) -> None:
        self.users: dict[int, UserRow] = {}
        self.contacts: dict[tuple[int, int], ContactRow] = {}
        self.presence: dict[int, PresenceRow] = {}
        self.conferences: dict[str, ConferenceRow] = {}
        self.cdrs: list[StoredRecord] = []
        self.fail_next: Exception | None = None

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc

    def load_users(self) -> Iterator[UserRow]:
        return iter(list(self.users.values()))

    def load_contacts(self) -> Iterator[ContactRow]:
        return iter(list(self.contacts.values()))

    def load_presence(self) -> Iterator[PresenceRow]:
        return iter(list(self.presence.values()))

    def add_users(self, rows: Iterable[UserRow]) -> None:
        self._maybe_fail()
        for row in rows:
            self.users[row.id] = row

    def put_contact(self, row: ContactRow) -> None:
        self._maybe_fail()
        self.contacts[(row.user_id, row.contact_id)] = row

    def put_contacts(self, rows: Iterable[ContactRow]) -> None:
        self._maybe_fail()
        for row in rows:
            self.contacts[(row.user_id, row.contact_id)] = row

    def delete_contact(self, user_id: int, contact_id: int) -> None:
        self._maybe_fail()
        self.contacts.pop((user_id, contact_id), None)

    def put_presence(self, row: PresenceRow) -> None:
        self._maybe_fail()
        self.presence[row.user_id] = row

    def load_conferences(self) -> Iterator[ConferenceRow]:
        return iter(list(self.conferences.values()))

    def put_conference(self, row: ConferenceRow) -> None:
        self._maybe_fail()
        self.conferences[row.conversation_id] = row

    def delete_conference(self, conversation_id: str, organizer_id: int) -> None:
        self._maybe_fail()
        self.conferences.pop(conversation_id, None)

    def add_cdr(self, time: float, record: CdrRecord) -> int:
        self._maybe_fail()
        rid = len(self.cdrs) + 1
        self.cdrs.append(StoredRecord(rid, time, record))
        return rid

    def list_cdr(self, since: float) -> Iterator[StoredRecord]:
        return iter([r for r in self.cdrs if r.time >= since])

    def close(self) -> None:
        pass


class TimedStore:
    """A Store whose writes are timed: ``on_write(seconds)`` after each one, even one that
    raised (the store queue latency of Lync's health figures). Reads pass through, and so do
    the bulk writes of provisioning (users, contact lists): the operator's, made before the
    load, they would read as a queue of many seconds."""

    def __init__(
        self, store: Store, monotonic: Callable[[], float], on_write: Callable[[float], None]
    ) -> None:
        self.inner = store
        self._monotonic = monotonic
        self._on_write = on_write

    def _timed(self, write: Callable[[], T]) -> T:
        start = self._monotonic()
        try:
            return write()
        finally:
            self._on_write(self._monotonic() - start)

    def load_users(self) -> Iterator[UserRow]:
        return self.inner.load_users()

    def load_contacts(self) -> Iterator[ContactRow]:
        return self.inner.load_contacts()

    def load_presence(self) -> Iterator[PresenceRow]:
        return self.inner.load_presence()

    def load_conferences(self) -> Iterator[ConferenceRow]:
        return self.inner.load_conferences()

    def list_cdr(self, since: float) -> Iterator[StoredRecord]:
        return self.inner.list_cdr(since)

    def add_users(self, rows: Iterable[UserRow]) -> None:
        self.inner.add_users(rows)

    def put_contact(self, row: ContactRow) -> None:
        self._timed(lambda: self.inner.put_contact(row))

    def put_contacts(self, rows: Iterable[ContactRow]) -> None:
        self.inner.put_contacts(rows)

    def delete_contact(self, user_id: int, contact_id: int) -> None:
        self._timed(lambda: self.inner.delete_contact(user_id, contact_id))

    def put_presence(self, row: PresenceRow) -> None:
        self._timed(lambda: self.inner.put_presence(row))

    def put_conference(self, row: ConferenceRow) -> None:
        self._timed(lambda: self.inner.put_conference(row))

    def delete_conference(self, conversation_id: str, organizer_id: int) -> None:
        self._timed(lambda: self.inner.delete_conference(conversation_id, organizer_id))

    def add_cdr(self, time: float, record: CdrRecord) -> int:
        return self._timed(lambda: self.inner.add_cdr(time, record))

    def close(self) -> None:
        self.inner.close()
