"""The IM conferencing unit (IMMCU): every conversation, two-party or conference, runs here.

A conversation starts two-party (one invitee) or as an ad hoc conference (several). Inviting a
third person *escalates* a two-party conversation: a conference URI is made, the two-party
session ends (its record says where it went) and the others are told. A conversation ends when
fewer than two people are in it or invited to it. Each message gets the next sequence number of
its conversation and is queued for every other participant in that order.

The IMMCU keeps up to 50 messages for the first 40 s after a conversation's first message;
conference joiners within those 40 s get them. A two-party invitee gets what was said while
the invitation was pending.

A conversation's id names its organizer's routing group (``c-g<group>-<random>``): it is hosted
by the front end that holds that group's primary. A conference's roster (who is in it or
invited, not what was said) is persistent data of that group: every change goes to
``rosters`` (the store), and ``restore`` brings a conference back from its roster on a new
host after a failure, with every member invited back to the same conversation id.

Conversation lifecycle (one writer: this class):

    (created) --accept--> ACTIVE --invite 3rd--> CONFERENCE --(<2 left)--> ENDED
        |                   |--(<2 left)-----------------------------------> ENDED
        +--decline / no answer / inviter leaves----------------------------> ENDED
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping

from pool.cdr import CdrRecord, ConferenceJoinRecord, ConferenceMessageCountRecord, ConferenceRecord
from pool.clock import Clock
from pool.config import EngineConfig
from pool.conversation import REJOIN_REASONS as REJOIN_REASONS
from pool.conversation import Conversation, Participant, PendingInvite, check_reach, session_record
from pool.conversation import check_message as check_message
from pool.conversation import group_of as group_of
from pool.directory import User
from pool.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from pool.events import (
    ChatMessage,
    ConversationEnded,
    ConversationEscalated,
    Event,
    Invitation,
    MessageReceived,
    ParticipantJoined,
    ParticipantLeft,
    TypingChanged,
    fan_out,
)
from pool.observer import Observer
from pool.privacy import Reach
from pool.registrar import Endpoint
from pool.store import ConferenceRow, Rosters
from pool.timers import TimerHeap

MAX_SUBJECT = 256


class Immcu:
    def __init__(
        self,
        config: EngineConfig,
        clock: Clock,
        timers: TimerHeap,
        deliver: Callable[[Endpoint, Event], None],
        record: Callable[[CdrRecord], None],
        observer: Observer,
        rosters: Rosters | None = None,
    ) -> None:
        self._config = config
        self._limits = config.limits
        self._clock = clock
        self._timers = timers
        self._deliver = deliver
        self._record = record
        self._obs = observer
        self._rosters = rosters
        self.conversations: dict[str, Conversation] = {}

    # --- look-ups ---

    def _get(self, conversation_id: str) -> Conversation:
        conv = self.conversations.get(conversation_id)
        if conv is None:
            if not conversation_id:
                raise InvalidArgument("conversation_id is empty")
            raise NotFound(f"unknown conversation {conversation_id}: it ended or never existed")
        return conv

    def _participant(self, ep: Endpoint, conversation_id: str) -> tuple[Conversation, Participant]:
        conv = self._get(conversation_id)
        part = conv.participants.get(ep.user.id)
        if part is None or part.endpoint is not ep:
            raise PermissionDenied(
                f"{ep.uri} (endpoint {ep.id}) is not a participant of conversation {conv.id}"
            )
        return conv, part

    def _check_room(self, user: User) -> None:
        if user.conversations >= self._limits.max_conversations_per_user:
            raise ResourceExhausted(
                f"{user.uri} is in {user.conversations} conversations already: at most "
                f"{self._limits.max_conversations_per_user}; leave one first"
            )

    # --- operations ---

    def create(
        self,
        ep: Endpoint,
        invitees: list[User],
        subject: str,
        first: ChatMessage | None,
        reaches: Mapping[int, Reach] | None = None,
    ) -> tuple[Conversation, MessageReceived | None]:
        """Start a conversation; invitees are validated, distinct users other than the caller.
        ``reaches``: verdicts by user id for invitees served by other front ends."""
        if len(subject) > MAX_SUBJECT:
            raise InvalidArgument(f"subject is {len(subject)} characters: at most {MAX_SUBJECT}")
        if len(invitees) + 1 > self._limits.max_participants:
            raise ResourceExhausted(
                f"{len(invitees) + 1} participants: a conference holds at most "
                f"{self._limits.max_participants}"
            )
        self._check_room(ep.user)
        for target in invitees:
            check_reach(ep.user, target, reaches.get(target.id) if reaches else None)
        now = self._clock.now()
        conv = Conversation(f"c-g{ep.user.routing_group}-{secrets.token_hex(8)}", subject, ep, now)
        self.conversations[conv.id] = conv
        self._obs.im_session_attempted()
        if len(invitees) > 1:
            self._start_conference(conv, now)
        self._join(conv, ep, now)
        sent = None
        if first:
            part, mono = conv.participants[ep.user.id], self._clock.monotonic()
            sent = self._post(conv, part, first.body, first.content_type, mono)
        for target in invitees:
            self._invite(conv, ep, target, first if sent else None, sent.sequence if sent else 0)
        self._save_roster(conv)
        return conv, sent

    def invite(
        self, ep: Endpoint, conversation_id: str, target: User, verdict: Reach | None = None
    ) -> bool:
        """Invite one more person; True if that escalated a two-party conversation."""
        conv, _ = self._participant(ep, conversation_id)
        if target.id in conv.participants or target.id in conv.pending:
            raise FailedPrecondition(f"{target.uri} is already in conversation {conv.id}")
        if len(conv.participants) + len(conv.pending) >= self._limits.max_participants:
            raise ResourceExhausted(
                f"conversation {conv.id} is full: at most {self._limits.max_participants} "
                "participants"
            )
        check_reach(ep.user, target, verdict)
        # a live two-party conversation always has its two people (joined or invited)
        escalated = not conv.is_conference
        if escalated:
            self._escalate(conv)
        self._invite(conv, ep, target, None, 0)
        self._save_roster(conv)
        return escalated

    def accept(self, ep: Endpoint, conversation_id: str) -> Conversation:
        conv = self._get(conversation_id)
        user = ep.user
        invite = conv.pending.get(user.id)
        if invite is None:
            if user.id in conv.participants:
                raise FailedPrecondition(f"{user.uri} is in conversation {conv.id} already")
            raise PermissionDenied(f"{user.uri} was not invited to conversation {conv.id}")
        self._check_room(user)
        del conv.pending[user.id]
        user.uninvite(conv.id)
        invite.timer.cancel()
        now = self._clock.now()
        if not conv.is_conference:
            conv.session_to_endpoint = ep.id
            conv.response_time = now
            conv.response_code = 200
            self._obs.im_session_established()
        for other in user.endpoints:
            if other is not ep:
                self._deliver(
                    other, ConversationEnded(conv.id, "accepted-on-another-endpoint", now)
                )
        joined = ParticipantJoined(conv.id, user.uri, now)
        for part in conv.participants.values():
            self._deliver(part.endpoint, joined)
        self._join(conv, ep, now)
        in_window = (
            conv.first_message_mono is not None
            and self._clock.monotonic() - conv.first_message_mono
            <= self._config.timers.immcu_buffer_window
        )
        if not conv.is_conference or in_window:
            for msg in conv.buffer:
                if msg.sequence > invite.carried_seq and msg.sender != user.uri:
                    self._deliver(ep, msg)
        return conv

    def decline(self, ep: Endpoint, conversation_id: str) -> None:
        conv = self._get(conversation_id)
        if ep.user.id not in conv.pending:
            raise PermissionDenied(f"{ep.uri} has no pending invitation to conversation {conv.id}")
        self._refuse(conv, ep.user, 603, "declined")

    def send(
        self, ep: Endpoint, conversation_id: str, body: str, ctype: str, mono: float
    ) -> MessageReceived:
        """Route a message ``message_type`` passed to the conversation's other members."""
        conv = self.conversations.get(conversation_id)
        part = None if conv is None else conv.participants.get(ep.user.id)
        if conv is None or part is None or part.endpoint is not ep:
            conv, part = self._participant(ep, conversation_id)  # raises the reason
        if (
            not conv.conference_uri  # not ``is_conference``: a property call on every message
            and conv.session_to is not None
            and conv.response_code == 0
            and len(conv.buffer) >= self._config.immcu_buffer_messages
        ):
            raise ResourceExhausted(
                f"{conv.session_to.uri} has not accepted yet and {len(conv.buffer)} messages are "
                "waiting: wait for the invitation to be accepted"
            )
        return self._post(conv, part, body, ctype, mono)

    def set_typing(self, ep: Endpoint, conversation_id: str, typing: bool) -> None:
        conv, _ = self._participant(ep, conversation_id)
        event = TypingChanged(conv.id, ep.uri, typing, self._clock.now())
        for part in conv.participants.values():
            if part.endpoint is not ep:
                self._deliver(part.endpoint, event)

    def leave(self, ep: Endpoint, conversation_id: str, reason: str = "left") -> None:
        conv = self._get(conversation_id)
        user = ep.user
        part = conv.participants.get(user.id)
        if part is None or part.endpoint is not ep:
            if user.id in conv.pending:
                self._refuse(conv, user, 603, "declined")
                return
            raise PermissionDenied(f"{ep.uri} is not a participant of conversation {conv.id}")
        now = self._clock.now()
        self._part(conv, part, now)
        left = ParticipantLeft(conv.id, user.uri, reason, now)
        for other in conv.participants.values():
            self._deliver(other.endpoint, left)
        if reason in REJOIN_REASONS and conv.is_conference and conv.participants:
            self._invite(conv, conv.organizer, user, None, 0)
        unanswered = not conv.is_conference and conv.response_code == 0
        self._end_if_over(conv, now, "cancelled" if unanswered else "left")
        self._save_roster(conv)

    def leave_all(self, ep: Endpoint, reason: str) -> None:
        """Take an endpoint that is going away out of all its conversations."""
        for conv_id in list(ep.conversations):
            conv = self.conversations.get(conv_id)
            if conv is not None and not conv.ended:
                self.leave(ep, conv_id, reason)
        if reason in REJOIN_REASONS:
            return  # the person comes back elsewhere: their invitations stay open
        if any(o is not ep and not o.signed_out for o in ep.user.endpoints):
            return  # another endpoint of the user can still answer the invitations
        for conv_id in list(ep.user.invitations):
            conv = self.conversations.get(conv_id)
            if conv is not None and ep.user.id in conv.pending:
                self._refuse(conv, ep.user, 480, "signed-out")

    def refuse(self, conversation_id: str, user: User, code: int, reason: str) -> None:
        """``user`` can no longer answer their invitation (their home front end says why)."""
        conv = self.conversations.get(conversation_id)
        if conv is not None and user.id in conv.pending:
            self._refuse(conv, user, code, reason)

    # --- internals: every state change goes through these ---

    def _invite(
        self,
        conv: Conversation,
        inviter: Endpoint,
        target: User,
        first: ChatMessage | None,
        carried_seq: int,
    ) -> None:
        now = self._clock.now()
        deadline = self._clock.monotonic() + self._config.timers.invitation_timeout
        timer = self._timers.schedule(deadline, lambda: self._no_answer(conv, target))
        if not conv.is_conference:
            conv.session_to = target
        event = Invitation(
            conv.id, inviter.uri, first, conv.subject, conv.conference_uri, conv.uris(), now
        )
        conv.pending[target.id] = PendingInvite(target, inviter, carried_seq, timer, event)
        target.invite(conv.id)
        for target_ep in target.endpoints:
            self._deliver(target_ep, event)

    def _no_answer(self, conv: Conversation, target: User) -> None:
        if not conv.ended and target.id in conv.pending:
            self._refuse(conv, target, 408, "no-answer")

    def _refuse(self, conv: Conversation, target: User, code: int, reason: str) -> None:
        invite = conv.pending.pop(target.id)
        target.uninvite(conv.id)
        invite.timer.cancel()
        now = self._clock.now()
        if not conv.is_conference:
            conv.response_time = now
            conv.response_code = code
        left = ParticipantLeft(conv.id, target.uri, reason, now)
        for part in conv.participants.values():
            self._deliver(part.endpoint, left)
        for target_ep in target.endpoints:
            self._deliver(target_ep, ConversationEnded(conv.id, reason, now))
        self._end_if_over(conv, now, reason)
        self._save_roster(conv)

    def _join(self, conv: Conversation, ep: Endpoint, now: float) -> None:
        conv.restored = False
        conv.participants[ep.user.id] = Participant(ep, now)
        conv.queues[ep.user.id] = ep.queue
        ep.conversations[conv.id] = conv
        ep.user.conversations += 1

    def _part(self, conv: Conversation, part: Participant, now: float) -> None:
        ep = part.endpoint
        del conv.participants[ep.user.id]
        del conv.queues[ep.user.id]
        ep.conversations.pop(conv.id, None)
        ep.user.conversations -= 1
        if conv.is_conference:
            self._record_conference_member(conv, part, now)

    def _record_conference_member(self, conv: Conversation, part: Participant, now: float) -> None:
        uri = part.endpoint.uri
        self._record(
            ConferenceJoinRecord(conv.conference_uri, uri, part.endpoint.id, part.joined_at, now)
        )
        self._record(ConferenceMessageCountRecord(conv.conference_uri, uri, part.messages))

    def _post(
        self, conv: Conversation, part: Participant, body: str, ctype: str, mono: float
    ) -> MessageReceived:
        # the routing path: every message of every conversation, so names are read once
        clock = self._clock
        seq = conv.sequence = conv.sequence + 1
        cid = conv.id
        sender = part.endpoint
        now = clock.now()  # (below: ``sender.user.uri``, not the property ``sender.uri``)
        msg = MessageReceived(cid, sender.user.uri, seq, f"{cid}:{seq}", body, ctype, now)
        first = conv.first_message_mono
        if first is None:
            first = conv.first_message_mono = mono
        conference = bool(conv.conference_uri)  # ``is_conference`` without a property call
        buffer = conv.buffer
        if mono - first <= self._config.timers.immcu_buffer_window or (
            conv.pending and not conference
        ):
            if len(buffer) < self._config.immcu_buffer_messages:
                buffer.append(msg)
        elif buffer:
            buffer.clear()
        part.messages += 1
        if not conference:
            counts = conv.session_counts
            uid = sender.user.id
            counts[uid] = counts.get(uid, 0) + 1
        # straight to the recipients' queues, as ``Engine.deliver`` pushes one at a time
        queues = conv.queues  # the sender's among them: it is a participant
        dropped = fan_out(queues.values(), sender.queue, msg, mono)
        obs = self._obs
        if dropped:
            obs.events_dropped(dropped)
        obs.message_routed(len(queues) - 1, clock.monotonic() - mono)
        return msg

    def _start_conference(self, conv: Conversation, now: float) -> None:
        org = conv.organizer.user
        conv.conference_uri = f"{org.uri};gruu;opaque=app:conf:chat:id:{conv.id.rsplit('-', 1)[1]}"
        conv.conference_started_at = now
        self._obs.conference_started()

    def _escalate(self, conv: Conversation) -> None:
        now = self._clock.now()
        self._start_conference(conv, now)
        self._record_session(conv, now)
        for part in conv.participants.values():
            part.joined_at = now
            part.messages = 0
        event = ConversationEscalated(conv.id, conv.conference_uri, now)
        for part in conv.participants.values():
            self._deliver(part.endpoint, event)

    def _record_session(self, conv: Conversation, now: float) -> None:
        record = session_record(conv, now)
        if record is not None:
            self._record(record)
            conv.session_to = None

    def _end_if_over(self, conv: Conversation, now: float, reason: str) -> None:
        if conv.ended or (
            (conv.participants or conv.restored) and len(conv.participants) + len(conv.pending) >= 2
        ):
            return
        conv.ended = True
        del self.conversations[conv.id]
        for invite in list(conv.pending.values()):
            invite.timer.cancel()
            invite.user.uninvite(conv.id)
            for target_ep in invite.user.endpoints:
                self._deliver(target_ep, ConversationEnded(conv.id, "cancelled", now))
        conv.pending.clear()
        if not conv.is_conference:
            self._record_session(conv, now)
        ended = ConversationEnded(conv.id, reason, now)
        for part in list(conv.participants.values()):
            self._deliver(part.endpoint, ended)
            self._part(conv, part, now)
        if conv.is_conference:
            self._record(
                ConferenceRecord(
                    conv.conference_uri,
                    conv.conference_started_at,
                    now,
                    conv.organizer.uri,
                    self._config.pool_name,
                )
            )

    # --- conference rosters ---

    def _save_roster(self, conv: Conversation) -> None:
        """Persist a conference's roster after a change of who is in it or invited."""
        if self._rosters is None or not conv.is_conference:
            return
        if conv.ended:
            self._rosters.delete_conference(conv.id, conv.organizer.user.id)
        else:
            self._rosters.put_conference(conv.roster())

    def invitations_for(self, user: User) -> list[Invitation]:
        """The invitations ``user`` has not answered yet, for an endpoint that just signed in."""
        out = []
        for conv_id in user.invitations:
            conv = self.conversations.get(conv_id)
            invite = conv.pending.get(user.id) if conv is not None else None
            if invite is not None:
                out.append(invite.event)
        return out

    def restore(self, row: ConferenceRow, organizer: Endpoint, members: list[User]) -> None:
        """Bring a conference back from its roster on this (new) host: nobody is in it yet,
        every member is invited back to the same conversation id (by ``organizer``, the
        organizer's stand-in endpoint). It ends like any other once fewer than two people are
        left in it or invited; what was said before is gone (IM text is transient)."""
        if row.conversation_id in self.conversations:
            return
        conv = Conversation(row.conversation_id, row.subject, organizer, row.started_at)
        conv.conference_uri = row.conference_uri
        conv.conference_started_at = row.started_at
        conv.restored = True
        self.conversations[conv.id] = conv
        self._obs.conference_started()
        for user in members:
            self._invite(conv, organizer, user, None, 0)
        if len(conv.pending) < 2:
            self._end_if_over(conv, self._clock.now(), "restored-empty")
            self._save_roster(conv)

    def hand_over(self, group: int, reason: str, only: str = "") -> list[Conversation]:
        """Forget the conversations of ``group``'s organizers (``only``: just that one) without
        ending them: the group is served by another front end now, which restores its
        conferences from their rosters. Every endpoint in them here (or invited) is told they
        ended, for ``reason``. Returns them, so the caller can tidy up what points at them."""
        now = self._clock.now()
        out = []
        if only:
            one = self.conversations.get(only)
            candidates = [one] if one is not None else []
        else:
            candidates = list(self.conversations.values())
        for conv in candidates:
            if group_of(conv.id) != group:
                continue
            out.append(conv)
            del self.conversations[conv.id]
            conv.ended = True
            ended = ConversationEnded(conv.id, reason, now)
            for invite in conv.pending.values():
                invite.timer.cancel()
                invite.user.uninvite(conv.id)
                for target_ep in invite.user.endpoints:
                    self._deliver(target_ep, ended)
            for part in conv.participants.values():
                ep = part.endpoint
                ep.conversations.pop(conv.id, None)
                ep.user.conversations -= 1
                self._deliver(ep, ended)
        return out
