"""One front end's engine: the domain operations a transport exposes, over plain objects.

Single-threaded by contract: every method runs on the caller's thread (the server's event
loop) and does no I/O but the store's small writes. The one exception is
``check_password``, which reads immutable data and may run on a worker thread (PBKDF2 is slow
on purpose). Persistent writes go to the store first, so an error leaves memory unchanged.

Each endpoint has one housekeeping timer (idle transitions, registration expiry), re-armed
from its own action, so input on the hot path never touches the timer heap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping

from pool.cdr import CdrRecord, RegistrationRecord, StoredRecord
from pool.clock import Clock
from pool.config import EngineConfig
from pool.conversation import Conversation, check_message, message_type
from pool.directory import (
    MAX_PROVISION,
    Directory,
    ProvisionResult,
    User,
    contact_entry,
    hash_password,
)
from pool.errors import InvalidArgument, ResourceExhausted, Unauthenticated, Unavailable
from pool.events import ChatMessage, Event, EventQueue, Invitation, SignedOut
from pool.immcu import Immcu
from pool.observer import NULL_OBSERVER, Observer
from pool.presence import OFFLINE_AGGREGATE, MachineState, PresenceStates
from pool.presence_service import BulkEntry, ContactView, PresenceService, Publication
from pool.privacy import PresenceView, Reach
from pool.registrar import Endpoint, Registrar, StandIn
from pool.store import ConferenceRow, ContactRow, PresenceRow, Store, TimedStore
from pool.throttle import SAMPLE_S, Throttle
from pool.timers import TimerHeap
from pool.uri import parse_uri

_ACTIVE = MachineState.ACTIVE  # a module name: read on every message
MAX_DEVICE = 64
FLOW_SWEEP_INTERVAL = 5.0
_DUMMY_SALT = os.urandom(16)


class Reason:
    """De-registration reasons, as call detail records name them."""

    CLIENT = "client-initiated"
    EXPIRED = "registration-expired"
    FLOW_CONTROLLED = "flow-controlled"
    SHUTDOWN = "server-shutdown"


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        store: Store,
        clock: Clock,
        observer: Observer = NULL_OBSERVER,
        *,
        directory: Directory | None = None,
        on_sign_out: Callable[[Endpoint, str], None] | None = None,
    ) -> None:
        """``directory``: one made beforehand, for a store that needs it (Enterprise's store
        files each write under its user's routing group). ``on_sign_out``: called first thing
        when an endpoint signs out (an Enterprise front end tells the others)."""
        self.config = config
        self._max_chars = config.limits.max_message_chars  # read on every message
        self.store = store
        self.clock = clock
        self.observer = observer
        self.timers = TimerHeap()
        #: overload: "server too busy" and flow control (read by the transport)
        self.throttle = Throttle(config.throttling)
        # every write the engine makes is timed: the store queue latency
        store = self._writes = TimedStore(store, clock.monotonic, self._store_write)
        if directory is None:
            directory = Directory(config.routing_groups, config.password_iterations)
        self.directory = directory
        self.registrar = Registrar()
        self.presence = PresenceService(config, self.directory, store, clock, self.timers, observer)
        self.immcu = Immcu(
            config, clock, self.timers, self.deliver, self.record, observer, rosters=store
        )
        self.started_at = clock.now()
        self.users_signed_in = 0
        self.closing = False
        self.address = config.address  # set to the bound address once the server listens
        self.metrics_address = ""
        self._on_sign_out = on_sign_out
        self._schedule_flow_sweep()
        self._schedule_throttle_sample()

    # --- start-up and records ---

    def load(self) -> int:
        """Load persistent data from the store; returns the number of users."""
        for row in self.store.load_users():
            self.directory.load(row)
        for c in self.store.load_contacts():
            self.directory.by_id(c.user_id).contacts[c.contact_id] = contact_entry(
                c.access_level, c.group
            )
        for p in self.store.load_presence():
            self.presence.restore(self.directory.by_id(p.user_id), p)
        # a (re)started server holds no conference: nobody is signed in to rejoin one, and a
        # single server has no other front end to restore rosters on. Forget what a crash left.
        for conference in list(self.store.load_conferences()):
            self._writes.delete_conference(conference.conversation_id, conference.organizer_id)
        return len(self.directory)

    def record(self, record: CdrRecord) -> None:
        self._writes.add_cdr(self.clock.now(), record)

    def _store_write(self, seconds: float) -> None:
        self.observer.store_write(seconds)
        self.throttle.store_write(seconds, self.clock.monotonic())

    def deliver(self, ep: Endpoint, event: Event) -> None:
        queue = ep.queue
        if not queue.push(event, self.clock.monotonic()) and not queue.closed:
            self.observer.events_dropped(1)

    # --- administration ---

    def provision(
        self, prefix: str, domain: str, count: int, start_index: int, password: str
    ) -> ProvisionResult:
        rows, result = self.directory.plan_provision(prefix, domain, count, start_index, password)
        self.store.add_users(rows)
        for row in rows:
            self.directory.load(row)
        return result

    def provision_contacts(self, entries: list[BulkEntry]) -> int:
        if len(entries) > MAX_PROVISION:
            raise InvalidArgument(f"{len(entries)} contacts in one call: at most {MAX_PROVISION}")
        return self.presence.provision_contacts(entries)

    def call_detail_records(self, since: float) -> Iterator[StoredRecord]:
        return self.store.list_cdr(since)

    # --- registration ---

    def check_password(self, uri: str, password: str) -> User:
        """The user if the password is right; safe to call from a worker thread."""
        user = self.directory.get(parse_uri(uri))  # malformed: InvalidArgument
        if user is None or not password:  # unknown users cost the same hashing time
            hash_password(password or "-", _DUMMY_SALT, self.config.password_iterations)
            self.observer.logon(False, "bad-credentials")
            raise Unauthenticated("sign-in failed: wrong user URI or password")
        if not user.check_password(password):
            self.observer.logon(False, "bad-credentials")
            raise Unauthenticated(f"sign-in failed for {user.uri}: wrong user URI or password")
        return user

    def sign_in(self, user: User, device: str) -> Endpoint:
        if self.closing:
            raise Unavailable("the front end is shutting down: sign in again later")
        device = device or "unknown"
        if len(device) > MAX_DEVICE:
            raise InvalidArgument(f"device is {len(device)} characters: at most {MAX_DEVICE}")
        limits = self.config.limits
        if len(user.endpoints) >= limits.max_endpoints_per_user:
            self.observer.logon(False, "too-many-endpoints")
            raise ResourceExhausted(
                f"{user.uri} has {len(user.endpoints)} endpoints signed in: at most "
                f"{limits.max_endpoints_per_user}; sign one out first"
            )
        if not user.endpoints and self.users_signed_in >= limits.max_users_per_registrar:
            self.observer.logon(False, "registrar-full")
            raise ResourceExhausted(
                f"this registrar serves {self.users_signed_in} users: at most "
                f"{limits.max_users_per_registrar}"
            )
        mono = self.clock.monotonic()
        ep = Endpoint(
            id=self.registrar.new_endpoint_id(),
            user=user,
            device=device,
            token=self.registrar.new_token(),
            registered_at=self.clock.now(),
            expires_at=mono + self.config.timers.registration_expiry,
            queue=EventQueue(self.config.event_queue_capacity),
            last_input=mono,
        )
        self.registrar.add(ep)
        if not user.endpoints:
            self.users_signed_in += 1
        user.endpoints.append(ep)
        self.presence.recompute(user)
        self._arm(ep)
        self.observer.logon(True)
        for invitation in self.immcu.invitations_for(user):  # still ringing: ring here too
            self.deliver(ep, invitation)
        return ep

    def authenticate(self, token: str) -> Endpoint:
        """The endpoint of a token; refreshes its registration."""
        if self.closing:
            raise Unavailable("the front end is shutting down: sign in again later")
        ep = self.registrar.authenticate(token)
        ep.expires_at = self.clock.monotonic() + self.config.timers.registration_expiry
        return ep

    def sign_out(self, ep: Endpoint, reason: str = Reason.CLIENT) -> None:
        if ep.signed_out:
            return
        if self._on_sign_out is not None:
            self._on_sign_out(ep, reason)
        now = self.clock.now()
        self.immcu.leave_all(ep, reason)
        ep.signed_out = True
        if ep.timer is not None:
            ep.timer.cancel()
        self.presence.drop_endpoint(ep)
        user = ep.user
        user.endpoints.remove(ep)
        if not user.endpoints:
            self.users_signed_in -= 1
        self.registrar.remove(ep)
        self.presence.recompute(user)
        queue = ep.queue
        queue.push(SignedOut(reason, now), self.clock.monotonic())
        queue.close(reason, hard=reason == Reason.FLOW_CONTROLLED)
        self.record(
            RegistrationRecord(
                user.uri,
                ep.id,
                ep.device,
                self.config.front_end_id,
                True,
                ep.registered_at,
                now,
                reason,
            )
        )
        self.observer.deregistered(reason)

    def touch(self, ep: Endpoint, mono: float | None = None) -> None:
        """The person did something on this endpoint (at ``mono``, or now): it is not idle."""
        ep.last_input = self.clock.monotonic() if mono is None else mono
        if ep.effective != MachineState.ACTIVE and ep.machine <= MachineState.INACTIVE:
            ep.machine = MachineState.ACTIVE
            ep.effective = MachineState.ACTIVE
            self.presence.recompute(ep.user)
            self._arm(ep)

    # --- the event stream ---

    def open_stream(self, ep: Endpoint) -> None:
        ep.streams += 1

    def close_stream(self, ep: Endpoint) -> None:
        ep.streams -= 1
        if ep.streams == 0 and not ep.signed_out:
            ep.expires_at = self.clock.monotonic() + self.config.timers.registration_expiry
            self._arm(ep)

    def drain(self, ep: Endpoint, limit: int = 256) -> list[Event]:
        # The usual case (nothing dropped among at most ``limit`` events) is taken here, with
        # no clock: this runs once per recipient of every message. ``EventQueue.drain`` does
        # the rest.
        queue = ep.queue
        items = queue._items
        n = len(items)
        if queue._marks or n > limit:
            return queue.drain(limit, self.clock.monotonic())
        queue.pending_since = None
        if n == 1:
            return [items.popleft()]  # type: ignore[list-item]  # no markers among them
        out: list[Event] = list(items)  # type: ignore[arg-type]  # no markers among them
        items.clear()
        return out

    # --- presence and contacts ---

    def publish(self, ep: Endpoint, pub: Publication) -> PresenceView:
        before = ep.effective
        result = self.presence.publish(ep, pub)
        if ep.effective != before:
            self._arm(ep)
        return result

    def reset_presence(self, ep: Endpoint) -> PresenceView:
        return self.presence.reset(ep)

    def get_presence(self, ep: Endpoint, uris: list[str]) -> list[PresenceView]:
        return self.presence.get(ep, uris)

    def subscribe(self, ep: Endpoint, uris: list[str], expires: float) -> list[PresenceView]:
        if expires < 0 or expires > 86_400:
            raise InvalidArgument(f"expires_seconds={expires:g} is out of range: 0..86400")
        return self.presence.subscribe(ep, uris, expires)

    def unsubscribe(self, ep: Endpoint, uris: list[str]) -> int:
        return self.presence.unsubscribe(ep, uris)

    def add_contact(self, ep: Endpoint, uri: str, level: int, group: str) -> ContactView:
        return self.presence.add_contact(ep, uri, level, group)

    def remove_contact(self, ep: Endpoint, uri: str) -> int:
        return self.presence.remove_contact(ep, uri)

    def list_contacts(self, ep: Endpoint) -> list[ContactView]:
        return self.presence.list_contacts(ep)

    # --- conversations ---

    def create_conversation(
        self,
        ep: Endpoint,
        invitees: list[str],
        subject: str,
        first: ChatMessage | None,
        reaches: Mapping[int, Reach] | None = None,
    ) -> tuple[Conversation, int]:
        if not invitees:
            raise InvalidArgument("invitees is empty: invite at least one person")
        users: list[User] = []
        seen: set[int] = set()
        for uri in invitees:
            user = self.directory.require(uri, field_name="invitees")
            if user is ep.user:
                raise InvalidArgument(f"{user.uri} cannot invite themselves")
            if user.id not in seen:
                seen.add(user.id)
                users.append(user)
        if first is not None:
            first = check_message(
                first.body, first.content_type, self.config.limits.max_message_chars
            )
        self.touch(ep)
        conv, sent = self.immcu.create(ep, users, subject, first, reaches)
        return conv, sent.sequence if sent else 0

    def invite(
        self, ep: Endpoint, conversation_id: str, uri: str, verdict: Reach | None = None
    ) -> tuple[Conversation, bool]:
        """Invite one more person; the flag says whether that escalated to a conference."""
        target = self.directory.require(uri)
        self.touch(ep)
        escalated = self.immcu.invite(ep, conversation_id, target, verdict)
        return self.immcu.conversations[conversation_id], escalated

    def accept(self, ep: Endpoint, conversation_id: str) -> Conversation:
        self.touch(ep)
        return self.immcu.accept(ep, conversation_id)

    def decline(self, ep: Endpoint, conversation_id: str) -> None:
        self.touch(ep)
        self.immcu.decline(ep, conversation_id)

    def send_message(
        self, ep: Endpoint, conversation_id: str, body: str, content_type: str
    ) -> tuple[str, int]:
        content_type = message_type(body, content_type, self._max_chars)
        mono = self.clock.monotonic()  # read once for the touch and the routing
        ep.last_input = mono  # ``touch`` written out for its usual case (already active)
        if ep.effective != _ACTIVE:
            self.touch(ep, mono)
        sent = self.immcu.send(ep, conversation_id, body, content_type, mono)
        return sent.message_id, sent.sequence

    def set_typing(self, ep: Endpoint, conversation_id: str, typing: bool) -> None:
        self.touch(ep)
        self.immcu.set_typing(ep, conversation_id, typing)

    def leave(self, ep: Endpoint, conversation_id: str) -> None:
        self.touch(ep)
        self.immcu.leave(ep, conversation_id)

    # --- a pool's other front ends (Enterprise): stand-ins, groups served elsewhere ---

    def attach_stand_in(self, user: User, stand_in: StandIn) -> None:
        """``stand_in`` gets what is sent to ``user``'s endpoints (served elsewhere)."""
        if stand_in not in user.endpoints:
            user.endpoints.append(stand_in)

    def detach_stand_in(self, user: User, stand_in: StandIn) -> None:
        if stand_in in user.endpoints:
            user.endpoints.remove(stand_in)

    def watch(self, stand_in: StandIn, users: list[User]) -> list[PresenceView]:
        """Subscribe a remote endpoint's stand-in to ``users`` (served here; its own front end
        keeps the subscription's limits and expiry); their views for it now."""
        for user in users:
            user.watch(stand_in)
            stand_in.subscriptions[user.id] = 0.0
        return [self.presence.view_for(stand_in.user, u) for u in users]

    def unwatch(self, stand_in: StandIn, users: Iterable[User]) -> None:
        for user in users:
            user.unwatch(stand_in)
            stand_in.subscriptions.pop(user.id, None)

    def drop_stand_in(self, stand_in: StandIn, reason: str) -> None:
        """The remote endpoint behind ``stand_in`` is gone: its subscriptions end, it leaves
        its conversations for ``reason``."""
        self.unwatch(stand_in, [self.directory.by_id(t) for t in list(stand_in.subscriptions)])
        for conversation_id in list(stand_in.conversations):
            conv = self.immcu.conversations.get(conversation_id)
            if conv is not None and not conv.ended:
                self.immcu.leave(stand_in, conversation_id, reason)
        stand_in.signed_out = True

    def invited_elsewhere(self, user: User, conversation_id: str) -> None:
        """``user`` (served here) is invited to a conversation hosted on another front end."""
        user.invite(conversation_id)

    def invitation_closed(self, user: User, conversation_id: str) -> bool:
        """``user`` no longer has the invitation (answered, ended); whether it was open."""
        was_open = conversation_id in user.invitations
        user.uninvite(conversation_id)
        return was_open

    def load_persistent(
        self, users: Iterable[User], contacts: Iterable[ContactRow], presence: Iterable[PresenceRow]
    ) -> None:
        """Replace ``users``' persistent data (contact lists, manual presence and note) with
        the rows of a replica: their group is served here now."""
        directory = self.directory
        for user in users:
            user.contacts = {}
            user.states.manual = None
            user.states.note = ""
        for row in contacts:
            directory.by_id(row.user_id).contacts[row.contact_id] = contact_entry(
                row.access_level, row.group
            )
        for p in presence:
            self.presence.restore(directory.by_id(p.user_id), p)

    def forget_user(self, user: User) -> None:
        """``user``'s group is served elsewhere now (their endpoints here signed out first):
        drop remote watchers' stand-ins (they subscribe at the new home), persistent data and
        presence."""
        for watcher in list(user.watchers):
            if isinstance(watcher, StandIn):
                user.unwatch(watcher)
                watcher.subscriptions.pop(user.id, None)
        user.contacts = {}
        user.states = PresenceStates()
        user.current = OFFLINE_AGGREGATE

    def conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation if it is hosted here."""
        return self.immcu.conversations.get(conversation_id)

    def invitations_for(self, user: User) -> list[Invitation]:
        return self.immcu.invitations_for(user)

    def refuse(self, conversation_id: str, user: User, code: int, reason: str) -> None:
        self.immcu.refuse(conversation_id, user, code, reason)

    def hand_over(self, group: int, reason: str, only: str = "") -> list[Conversation]:
        """Forget the conversations ``group``'s organizers host here (see ``Immcu.hand_over``)."""
        return self.immcu.hand_over(group, reason, only)

    def restore_conference(
        self, row: ConferenceRow, organizer: Endpoint, members: list[User]
    ) -> None:
        self.immcu.restore(row, organizer, members)

    # --- time ---

    def tick(self) -> float | None:
        """Run what is due; returns the next deadline (monotonic) or None."""
        self.timers.run_due(self.clock.monotonic())
        return self.timers.next_deadline()

    def _arm(self, ep: Endpoint) -> None:
        if ep.timer is not None:
            ep.timer.cancel()
        deadlines = [
            d
            for d in (self.presence.next_idle_deadline(ep), None if ep.streams else ep.expires_at)
            if d is not None
        ]
        ep.timer = (
            self.timers.schedule(min(deadlines), lambda: self._housekeep(ep)) if deadlines else None
        )

    def _housekeep(self, ep: Endpoint) -> None:
        if ep.signed_out:
            return
        mono = self.clock.monotonic()
        if not ep.streams and ep.expires_at <= mono:
            self.sign_out(ep, Reason.EXPIRED)
            return
        effective = self.presence.effective_machine(ep, mono)
        if effective != ep.effective:
            ep.effective = effective
            self.presence.recompute(ep.user)
        self._arm(ep)

    def _schedule_flow_sweep(self) -> None:
        self.timers.schedule(self.clock.monotonic() + FLOW_SWEEP_INTERVAL, self._flow_sweep)

    def _flow_sweep(self) -> None:
        """Sign out connected endpoints whose oldest unread event waited too long."""
        limit = self.clock.monotonic() - self.config.timers.flow_control_timeout
        for ep in self.registrar:
            since = ep.queue.pending_since
            if ep.streams and since is not None and since <= limit:
                self.sign_out(ep, Reason.FLOW_CONTROLLED)
        self._schedule_flow_sweep()

    def _schedule_throttle_sample(self) -> None:
        self.timers.schedule(self.clock.monotonic() + SAMPLE_S, self._throttle_sample)

    def _throttle_sample(self) -> None:
        self.throttle.sample(self.clock.monotonic())
        self._schedule_throttle_sample()

    def shutdown(self) -> None:
        """Sign every endpoint out (with records); refuse new work."""
        self.closing = True
        for ep in self.registrar:
            self.sign_out(ep, Reason.SHUTDOWN)
