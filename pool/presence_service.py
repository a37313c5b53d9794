"""Publishing, polling and subscribing to presence; contact lists and privacy levels.

On every change of a user's states the aggregate is recomputed; when it differs, each
subscribed endpoint is told what *its* user may see (one view per access level, built once per
change, however many watchers share that level).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from pool.clock import Clock
from pool.config import EngineConfig
from pool.directory import Directory, User, contact_entry
from pool.errors import InvalidArgument, NotFound, ResourceExhausted
from pool.events import PresenceChanged
from pool.observer import Observer
from pool.presence import (
    CALENDAR_AVAILABILITIES,
    USER_AVAILABILITIES,
    CalendarState,
    MachineState,
    ManualState,
    aggregate,
    check_activity,
)
from pool.privacy import AccessLevel, PresenceView, view
from pool.registrar import Endpoint
from pool.store import ContactRow, PresenceRow, Store
from pool.timers import TimerHeap

DEFAULT_GROUP = "Other Contacts"
MAX_GROUP = 64
MAX_SUBJECT = 256
#: how far ahead a calendar state may end (assumed: a year and a day; publish again for longer)
CALENDAR_HORIZON = 366 * 86_400.0
_LEVELS = frozenset(int(level) for level in AccessLevel)


class Source:
    USER = 0
    MACHINE = 1
    CALENDAR = 2
    PHONE = 3


#: one entry of a bulk contact list: (owner, contact, access level, group); it crosses
#: between front ends as a plain tuple (a named one pickles through Python code, per entry)
BulkEntry: TypeAlias = tuple[str, str, int, str]


class BulkContact(NamedTuple):
    """One entry of a bulk contact list (``ProvisionContacts``): ``owner_uri`` has
    ``contact_uri`` in ``group``, and gives them ``access_level`` (0: the default)."""

    owner_uri: str
    contact_uri: str
    access_level: int
    group: str


@dataclass(frozen=True, slots=True)
class Publication:
    """One PublishPresence request, as the domain sees it."""

    source: int = Source.USER
    availability: int = 0
    activity: str = ""
    note: str | None = None
    machine_state: MachineState | None = None
    until: float = 0.0
    meeting_subject: str = ""


@dataclass(frozen=True, slots=True)
class ContactView:
    user_uri: str
    access_level: AccessLevel
    group: str


class PresenceService:
    def __init__(
        self,
        config: EngineConfig,
        directory: Directory,
        store: Store,
        clock: Clock,
        timers: TimerHeap,
        observer: Observer,
    ) -> None:
        self._config = config
        self._limits = config.limits
        self._dir = directory
        self._store = store
        self._clock = clock
        self._timers = timers
        self._obs = observer

    # --- aggregation and fan-out ---

    def effective_machine(self, ep: Endpoint, mono: float) -> MachineState:
        """The endpoint's machine state after idling (SPEC section 3, rule 4)."""
        if ep.machine >= MachineState.AWAY:
            return ep.machine
        idle = mono - ep.last_input
        timers = self._config.timers
        if idle >= timers.idle_inactive + timers.idle_away:
            return MachineState.AWAY
        if idle >= timers.idle_inactive:
            return max(ep.machine, MachineState.INACTIVE)
        return ep.machine

    def next_idle_deadline(self, ep: Endpoint) -> float | None:
        """When the endpoint's effective machine state next changes by idling, if ever."""
        timers = self._config.timers
        if ep.effective == MachineState.ACTIVE:
            return ep.last_input + timers.idle_inactive
        if ep.effective == MachineState.INACTIVE:
            return ep.last_input + timers.idle_inactive + timers.idle_away
        return None

    def recompute(self, user: User) -> bool:
        """Re-aggregate ``user``; tell the watchers if it changed. True if it changed."""
        agg = aggregate(user.states, [ep.effective for ep in user.endpoints], self._clock.now())
        if agg == user.current:
            return False
        user.current = agg
        self._notify_watchers(user)
        return True

    def _notify_watchers(self, user: User, only: Iterable[Endpoint] | None = None) -> None:
        watchers = user.watchers if only is None else only
        if not watchers:
            return
        now = self._clock.now()
        mono = self._clock.monotonic()  # read once for the whole fan-out
        events: dict[AccessLevel, PresenceChanged] = {}
        sent = dropped = 0
        for w in watchers:
            level = user.level_for(w.user)
            if level is AccessLevel.BLOCKED and only is None:
                continue  # always Offline to them: a notification would only leak timing
            event = events.get(level)
            if event is None:
                event = PresenceChanged(view(user.uri, user.current, level), now)
                events[level] = event
            # straight to the watcher's queue, as ``Engine.deliver`` pushes one event
            queue = w.queue
            if not queue.push(event, mono) and not queue.closed:
                dropped += 1
            sent += 1
        if dropped:
            self._obs.events_dropped(dropped)
        self._obs.presence_notified(sent)

    def view_for(self, watcher: User, user: User) -> PresenceView:
        if watcher is user:
            return view(user.uri, user.current, AccessLevel.UNSPECIFIED, is_self=True)
        return view(user.uri, user.current, user.level_for(watcher))

    # --- publications ---

    def publish(self, ep: Endpoint, pub: Publication) -> PresenceView:
        """Validate everything, write what is persistent, then change memory."""
        user = ep.user
        states = user.states
        note = self._check_note(pub.note)
        activity = check_activity(pub.activity)
        manual = states.manual
        calendar: CalendarState | None = None
        if pub.source == Source.USER:
            if pub.availability not in USER_AVAILABILITIES:
                raise InvalidArgument(
                    f"availability {pub.availability} is not one a user can publish: use 3500 "
                    "Available, 6500 Busy, 9500 Do Not Disturb, 12500 Be Right Back, "
                    "15500 Away or 18500 Offline"
                )
            manual = ManualState(pub.availability, activity)
        elif pub.source == Source.MACHINE:
            if pub.machine_state is None or pub.machine_state == MachineState.UNKNOWN:
                raise InvalidArgument(
                    f"machine_state {pub.machine_state!r} cannot be published: a MACHINE "
                    "publication sets ACTIVE, INACTIVE, AWAY or OFF"
                )
        elif pub.source == Source.CALENDAR:
            calendar = self._calendar(pub, activity)
        elif pub.source == Source.PHONE:
            if pub.availability not in (0, 6500):
                raise InvalidArgument(
                    f"availability {pub.availability} is not a phone state: 6500 (in a call) or "
                    "0 (call ended)"
                )
        else:
            raise InvalidArgument(
                f"source {pub.source} is not a presence source: USER, MACHINE, CALENDAR or PHONE"
            )
        if pub.source == Source.USER or note is not None:
            self._persist(user, manual, states.note if note is None else note)
        # from here on nothing fails
        states.manual = manual
        if note is not None:
            states.note = note
        if pub.source == Source.MACHINE and pub.machine_state is not None:
            ep.machine = pub.machine_state
            if pub.machine_state == MachineState.ACTIVE:
                ep.last_input = self._clock.monotonic()
            ep.effective = self.effective_machine(ep, self._clock.monotonic())
        elif pub.source == Source.CALENDAR:
            states.calendar = calendar
            if calendar is not None and calendar.until:
                deadline = self._clock.monotonic() + (calendar.until - self._clock.now())
                self._timers.schedule(deadline, lambda: self._calendar_ended(user, calendar))
        elif pub.source == Source.PHONE:
            states.on_phone = pub.availability == 6500
        self._obs.presence_published()
        self.recompute(user)
        return self.view_for(user, user)

    def _calendar(self, pub: Publication, activity: str) -> CalendarState | None:
        if pub.availability == 0:
            return None
        if pub.availability not in CALENDAR_AVAILABILITIES:
            raise InvalidArgument(
                f"availability {pub.availability} is not a calendar state: 6500 (in a meeting), "
                "15500 (out of office) or 0 (clear)"
            )
        now = self._clock.now()
        if pub.until and not now < pub.until <= now + CALENDAR_HORIZON:  # also NaN
            raise InvalidArgument(
                f"until {pub.until!r} is out of range: a calendar state ends in the future and "
                f"within {CALENDAR_HORIZON / 86_400:g} days"
            )
        if len(pub.meeting_subject) > MAX_SUBJECT:
            raise InvalidArgument(f"meeting_subject is longer than {MAX_SUBJECT} characters")
        default = "in-a-meeting" if pub.availability == 6500 else "out-of-office"
        return CalendarState(pub.availability, activity or default, pub.until, pub.meeting_subject)

    def _calendar_ended(self, user: User, state: CalendarState) -> None:
        if user.states.calendar is state:  # not replaced since
            user.states.calendar = None
            self.recompute(user)

    def reset(self, ep: Endpoint) -> PresenceView:
        user = ep.user
        if user.states.manual is not None:
            self._persist(user, None, user.states.note)
            user.states.manual = None
            self.recompute(user)
        return self.view_for(user, user)

    def _check_note(self, note: str | None) -> str | None:
        if note is not None and len(note.encode()) > self._limits.max_note_bytes:
            raise InvalidArgument(
                f"note is {len(note.encode())} bytes: at most {self._limits.max_note_bytes}"
            )
        return note

    @staticmethod
    def restore(user: User, row: PresenceRow) -> None:
        """Set a user's persistent presence from its stored row (start-up, fail-over)."""
        user.states.note = row.note
        user.states.manual = (
            ManualState(row.manual_availability, row.manual_activity)
            if row.manual_availability
            else None
        )

    def _persist(self, user: User, manual: ManualState | None, note: str) -> None:
        self._store.put_presence(
            PresenceRow(
                user.id,
                manual.availability if manual else 0,
                manual.activity if manual else "",
                note,
            )
        )

    # --- polls and subscriptions ---

    def targets(self, uris: list[str], what: str) -> list[User]:
        if not uris:
            raise InvalidArgument(f"user_uris is empty: name at least one user to {what}")
        if len(uris) > self._limits.max_batch:
            raise InvalidArgument(
                f"{len(uris)} user_uris: at most {self._limits.max_batch} in one call"
            )
        users: list[User] = []
        missing: list[str] = []
        for uri in uris:
            try:
                users.append(self._dir.require(uri))
            except NotFound:
                missing.append(uri.lower())
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise NotFound(f"unknown user(s) {shown}: no such user is provisioned in this pool")
        return users

    def get(self, ep: Endpoint, uris: list[str]) -> list[PresenceView]:
        users = self.targets(uris, "poll")
        self._obs.presence_polled(len(users))
        return [self.view_for(ep.user, u) for u in users]

    def subscribe(self, ep: Endpoint, uris: list[str], expires: float) -> list[PresenceView]:
        users = self.targets(uris, "subscribe to")
        new = {u.id for u in users if u.id not in ep.subscriptions}
        user = ep.user
        if user.subscriptions + len(new) > self._limits.max_subscriptions:
            raise ResourceExhausted(
                f"{user.uri} has {user.subscriptions} open subscriptions and asked for "
                f"{len(new)} more: at most {self._limits.max_subscriptions}; unsubscribe first"
            )
        deadline = self._clock.monotonic() + expires if expires else 0.0
        for target in users:
            ep.subscriptions[target.id] = deadline
            target.watch(ep)
        user.subscriptions += len(new)
        if deadline:
            self._timers.schedule(deadline, lambda: self._expire_subscriptions(ep, deadline))
        return [self.view_for(user, u) for u in users]

    def _expire_subscriptions(self, ep: Endpoint, deadline: float) -> None:
        expired = [uid for uid, d in ep.subscriptions.items() if d and d <= deadline]
        self._drop_subscriptions(ep, expired)

    def unsubscribe(self, ep: Endpoint, uris: list[str]) -> int:
        users = self.targets(uris, "unsubscribe from")
        self._drop_subscriptions(ep, [u.id for u in users if u.id in ep.subscriptions])
        return ep.user.subscriptions

    def _drop_subscriptions(self, ep: Endpoint, user_ids: Iterable[int]) -> None:
        dropped = 0
        for uid in user_ids:
            if ep.subscriptions.pop(uid, None) is not None:
                self._dir.by_id(uid).unwatch(ep)
                dropped += 1
        ep.user.subscriptions -= dropped

    def drop_endpoint(self, ep: Endpoint) -> None:
        self._drop_subscriptions(ep, list(ep.subscriptions))

    # --- contacts and privacy ---

    def _check_contact(self, user: User, uri: str, level: int, group: str) -> tuple[User, str]:
        contact = self._dir.require(uri, field_name="contact_uri")
        if contact is user:
            raise InvalidArgument(f"{user.uri} cannot add themselves as a contact")
        if level not in _LEVELS:
            raise InvalidArgument(
                f"access_level {level} is not a privacy level: use 100 External, 200 Colleagues, "
                "300 Workgroup, 400 Friends and Family, 32000 Blocked (0 for the default)"
            )
        group = group or DEFAULT_GROUP
        if len(group) > MAX_GROUP:
            raise InvalidArgument(f"group is {len(group)} characters: at most {MAX_GROUP}")
        return contact, group

    def provision_contacts(self, entries: list[BulkEntry]) -> int:
        """Bulk contact lists (owner, contact, level, group): all validated, then one write.

        Watchers are not notified: provisioning happens before people sign in.
        """
        rows = self.check_contacts(entries)
        self._store.put_contacts(rows)
        for row in rows:
            self._dir.by_id(row.user_id).contacts[row.contact_id] = contact_entry(
                row.access_level, row.group
            )
        return len(rows)

    def check_contacts(self, entries: list[BulkEntry]) -> list[ContactRow]:
        """Validate bulk contact entries; the rows to write. Changes nothing."""
        rows: list[ContactRow] = []
        added: dict[int, set[int]] = {}
        for owner_uri, uri, level, group in entries:
            owner = self._dir.require(owner_uri, field_name="owner_uri")
            contact, group = self._check_contact(owner, uri, level, group)
            new = added.setdefault(owner.id, set())
            if contact.id not in owner.contacts:
                new.add(contact.id)
            if len(owner.contacts) + len(new) > self._limits.max_contacts:
                raise ResourceExhausted(
                    f"{owner.uri} would have {len(owner.contacts) + len(new)} contacts: at most "
                    f"{self._limits.max_contacts}"
                )
            rows.append(ContactRow(owner.id, contact.id, level, group))
        return rows

    def add_contact(self, ep: Endpoint, uri: str, level: int, group: str) -> ContactView:
        user = ep.user
        contact, group = self._check_contact(user, uri, level, group)
        existing = user.contacts.get(contact.id)
        if existing is None and len(user.contacts) >= self._limits.max_contacts:
            raise ResourceExhausted(
                f"{user.uri} has {len(user.contacts)} contacts: at most "
                f"{self._limits.max_contacts}; remove one first"
            )
        before = user.level_for(contact)
        self._store.put_contact(ContactRow(user.id, contact.id, level, group))
        user.contacts[contact.id] = contact_entry(level, group)
        if user.level_for(contact) != before:
            self._notify_watchers(user, [w for w in user.watchers if w.user is contact])
        return ContactView(contact.uri, user.level_for(contact), group)

    def remove_contact(self, ep: Endpoint, uri: str) -> int:
        user = ep.user
        contact = self._dir.require(uri, field_name="contact_uri")
        if contact.id not in user.contacts:
            raise NotFound(f"{contact.uri} is not a contact of {user.uri}")
        before = user.level_for(contact)
        self._store.delete_contact(user.id, contact.id)
        del user.contacts[contact.id]
        if user.level_for(contact) != before:
            self._notify_watchers(user, [w for w in user.watchers if w.user is contact])
        return len(user.contacts)

    def list_contacts(self, ep: Endpoint) -> list[ContactView]:
        user = ep.user
        out = []
        for cid, entry in user.contacts.items():
            contact = self._dir.by_id(cid)
            out.append(ContactView(contact.uri, user.level_for(contact), entry.group))
        return sorted(out, key=lambda c: (c.group, c.user_uri))
