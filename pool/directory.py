"""The directory of provisioned users, their password hashes and routing groups.

A *routing group* is the unit of placement in a pool: every user is put in one at
provisioning, by a stable hash of the URI, and is served by the front end that holds the
group's primary replica.

Passwords are stored as PBKDF2-SHA256 hashes with a random salt. Users provisioned together
with one password share that batch's salt and hash (hashing 80,000 users one by one would take
minutes); the salt still differs between batches and pools.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pool.errors import InvalidArgument, NotFound
from pool.presence import OFFLINE_AGGREGATE, Aggregate, PresenceStates
from pool.privacy import AccessLevel, default_level
from pool.store import UserRow
from pool.uri import check_domain, check_prefix, domain_of, parse_uri

if TYPE_CHECKING:
    from pool.registrar import Endpoint

MAX_PROVISION = 100_000
MAX_PASSWORD = 256


def routing_group_of(uri: str, groups: int) -> int:
    """A stable hash of the URI into ``groups`` routing groups."""
    digest = hashlib.blake2b(uri.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % groups


def hash_password(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)


@dataclass(frozen=True, slots=True)
class ContactEntry:
    """One contact in a user's list: the access level granted (0: the default by domain) and
    the contact group. Immutable and shared (see ``contact_entry``)."""

    access_level: int
    group: str


#: ContactEntry values in use, shared: a pool holds millions of contacts but few distinct
#: (level, group) pairs, so a list costs one dict slot per contact instead of an object
_ENTRIES: dict[tuple[int, str], ContactEntry] = {}
#: at most this many distinct pairs are shared; past it (group names are the clients' to
#: choose) new pairs get their own object, so the table cannot grow without bound
MAX_SHARED_ENTRIES = 4096


def contact_entry(access_level: int, group: str) -> ContactEntry:
    """The shared ContactEntry for ``(access_level, group)``."""
    key = (access_level, group)
    entry = _ENTRIES.get(key)
    if entry is None:
        entry = ContactEntry(access_level, group)
        if len(_ENTRIES) < MAX_SHARED_ENTRIES:
            _ENTRIES[key] = entry
    return entry


NO_WATCHERS: frozenset[Endpoint] = frozenset()
NO_INVITATIONS: frozenset[str] = frozenset()


@dataclass(slots=True, eq=False)
class User:
    """A provisioned user and the state the front end keeps for them while it serves them."""

    id: int
    uri: str
    domain: str
    display_name: str
    routing_group: int
    salt: bytes
    pw_hash: bytes
    iterations: int
    #: contact user id -> entry; the level is what *that contact* sees of this user
    contacts: dict[int, ContactEntry] = field(default_factory=dict)
    states: PresenceStates = field(default_factory=PresenceStates)
    current: Aggregate = OFFLINE_AGGREGATE
    endpoints: list[Endpoint] = field(default_factory=list)
    #: endpoints of other users subscribed to this user's presence (``watch``, ``unwatch``)
    watchers: set[Endpoint] | frozenset[Endpoint] = NO_WATCHERS
    subscriptions: int = 0
    conversations: int = 0
    #: conversations this user is invited to and has not answered (``invite``, ``uninvite``)
    invitations: set[str] | frozenset[str] = NO_INVITATIONS

    def level_for(self, watcher: User) -> AccessLevel:
        """The access level this user gives ``watcher``: as set, or the default by domain."""
        entry = self.contacts.get(watcher.id)
        if entry is not None and entry.access_level:
            return AccessLevel(entry.access_level)
        return default_level(self.domain, watcher.domain)

    # An empty set is 216 bytes, and most of a pool's users (every user on a front end that
    # is not their home) never have a watcher or an invitation: both start as one shared
    # empty frozenset, and become a set of their own at their first member.

    def watch(self, ep: Endpoint) -> None:
        watchers = self.watchers
        if not isinstance(watchers, set):
            watchers = self.watchers = set()
        watchers.add(ep)

    def unwatch(self, ep: Endpoint) -> None:
        if isinstance(self.watchers, set):
            self.watchers.discard(ep)

    def invite(self, conversation_id: str) -> None:
        invitations = self.invitations
        if not isinstance(invitations, set):
            invitations = self.invitations = set()
        invitations.add(conversation_id)

    def uninvite(self, conversation_id: str) -> None:
        if isinstance(self.invitations, set):
            self.invitations.discard(conversation_id)

    def check_password(self, password: str) -> bool:
        candidate = hash_password(password, self.salt, self.iterations)
        return hmac.compare_digest(candidate, self.pw_hash)


@dataclass(frozen=True, slots=True)
class ProvisionResult:
    created: int
    already_existed: int
    first_uri: str
    last_uri: str


class Directory:
    """Users by URI and by id. Only ``provision`` and ``load`` add users."""

    def __init__(self, routing_groups: int, iterations: int) -> None:
        self._by_uri: dict[str, User] = {}
        self._by_id: dict[int, User] = {}
        self.routing_groups = routing_groups
        self.iterations = iterations

    def __len__(self) -> int:
        return len(self._by_uri)

    def __iter__(self) -> Iterator[User]:
        return iter(self._by_id.values())

    def get(self, uri: str) -> User | None:
        return self._by_uri.get(uri)

    def by_id(self, user_id: int) -> User:
        return self._by_id[user_id]

    def group_of(self, user_id: int) -> int:
        """The routing group of user ``user_id``."""
        return self._by_id[user_id].routing_group

    def require(self, uri: str, *, field_name: str = "user_uri") -> User:
        """The user at ``uri`` (validated), or NotFound."""
        user = self._by_uri.get(uri)
        if user is not None:
            return user  # a provisioned user's own URI: canonical and valid already
        canonical = parse_uri(uri, field=field_name)
        user = self._by_uri.get(canonical)
        if user is None:
            raise NotFound(f"unknown user {canonical}: no such user is provisioned in this pool")
        return user

    def load(self, row: UserRow) -> User:
        user = User(
            row.id,
            row.uri,
            sys.intern(domain_of(row.uri)),  # one string per domain, not per user
            row.display_name,
            row.routing_group,
            row.salt,
            row.pw_hash,
            row.iterations,
        )
        self._by_uri[row.uri] = user
        self._by_id[row.id] = user
        return user

    def plan_provision(
        self, prefix: str, domain: str, count: int, start_index: int, password: str
    ) -> tuple[list[UserRow], ProvisionResult]:
        """Validate a provisioning request and build the rows to store; changes nothing."""
        check_prefix(prefix)
        domain = check_domain(domain)
        if not 1 <= count <= MAX_PROVISION:
            raise InvalidArgument(f"count={count} is out of range: expected 1..{MAX_PROVISION}")
        if not password or len(password) > MAX_PASSWORD:
            raise InvalidArgument(f"password must be 1..{MAX_PASSWORD} characters")
        if start_index < 0 or start_index + count > 2**32:
            raise InvalidArgument(f"start_index={start_index} is out of range")
        salt = os.urandom(16)
        pw_hash = hash_password(password, salt, self.iterations)
        next_id = max(self._by_id, default=0) + 1
        rows: list[UserRow] = []
        existed = 0
        uris = [
            f"sip:{prefix}{i}@{domain}".lower() for i in range(start_index, start_index + count)
        ]
        for uri in uris:
            if uri in self._by_uri:
                existed += 1
                continue
            parse_uri(uri)
            name = uri[4:].partition("@")[0]
            rows.append(
                UserRow(
                    next_id,
                    uri,
                    name,
                    routing_group_of(uri, self.routing_groups),
                    salt,
                    pw_hash,
                    self.iterations,
                )
            )
            next_id += 1
        return rows, ProvisionResult(len(rows), existed, uris[0], uris[-1])
