"""A conversation as the IMMCU (``pool.immcu``) keeps it, and the rules every front end checks
before one reaches its host: what a message may be, and which routing group an id names.

A conversation's id names its organizer's routing group (``c-g<group>-<random>``): it is
hosted by the front end that holds that group's primary.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pool.cdr import ImSessionRecord
from pool.directory import User
from pool.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from pool.events import ChatMessage, EventQueue, Invitation, MessageReceived
from pool.privacy import Reach, reach
from pool.registrar import Endpoint
from pool.store import ConferenceRow
from pool.timers import Timer

CONTENT_TYPES = frozenset({"text/plain", "text/html", "text/rtf"})
#: why an endpoint left without its person choosing to: a conference keeps them on its roster
#: and invites them back (they are rung when they sign in again, at their new home)
REJOIN_REASONS = frozenset({"connection-lost", "home-server-changed"})


@dataclass(slots=True, eq=False)
class Participant:
    endpoint: Endpoint
    joined_at: float
    messages: int = 0


@dataclass(slots=True, eq=False)
class PendingInvite:
    user: User
    inviter: Endpoint
    carried_seq: int  # the message carried by the invitation (0: none)
    timer: Timer
    event: Invitation


@dataclass(slots=True, eq=False)
class Conversation:
    id: str
    subject: str
    organizer: Endpoint
    created_at: float
    conference_uri: str = ""
    participants: dict[int, Participant] = field(default_factory=dict)
    #: each participant's event queue by user id, kept beside ``participants`` by the IMMCU's
    #: join and part: the routing path reads it for every message
    queues: dict[int, EventQueue] = field(default_factory=dict)
    pending: dict[int, PendingInvite] = field(default_factory=dict)
    sequence: int = 0
    first_message_mono: float | None = None
    buffer: deque[MessageReceived] = field(default_factory=deque)
    # two-party session facts, for its record
    session_to: User | None = None
    session_to_endpoint: str = ""
    response_time: float = 0.0
    response_code: int = 0
    session_counts: dict[int, int] = field(default_factory=dict)  # user id -> messages sent
    conference_started_at: float = 0.0
    ended: bool = False
    restored: bool = False  # back from its roster, and nobody has rejoined yet

    @property
    def is_conference(self) -> bool:
        return bool(self.conference_uri)

    def uris(self) -> tuple[str, ...]:
        return tuple(p.endpoint.uri for p in self.participants.values())

    def roster(self) -> ConferenceRow:
        """A conference's roster as it persists: who is in it or invited."""
        members = tuple(sorted({*self.participants, *self.pending}))
        return ConferenceRow(
            self.id,
            self.organizer.user.id,
            self.conference_uri,
            self.subject,
            self.conference_started_at,
            members,
        )


def group_of(conversation_id: str) -> int | None:
    """The routing group of a conversation's organizer, which its id names
    (``c-g<group>-<random>``); None for an id that is not one of ours."""
    head, _, rest = conversation_id.partition("-g")
    digits, dash, _ = rest.partition("-")
    if head != "c" or not dash or not (digits.isascii() and digits.isdigit()):  # not "²"
        return None
    return int(digits)


def check_message(body: str, content_type: str, max_chars: int) -> ChatMessage:
    return ChatMessage(body, message_type(body, content_type, max_chars))


def message_type(body: str, content_type: str, max_chars: int) -> str:
    """The content type a message goes with (empty: plain text), or why it is refused."""
    if body and len(body) <= max_chars and content_type in CONTENT_TYPES:
        return content_type  # the usual message, on the routing path: nothing more to check
    if not body:
        raise InvalidArgument("message body is empty: send at least one character")
    if len(body) > max_chars:
        raise InvalidArgument(
            f"message body is {len(body)} characters: at most {max_chars} are allowed"
        )
    ctype = content_type or "text/plain"
    if ctype not in CONTENT_TYPES:
        raise InvalidArgument(
            f"content_type {content_type!r} is not supported: use one of "
            f"{', '.join(sorted(CONTENT_TYPES))}"
        )
    return ctype


def check_reach(caller: User, target: User, verdict: Reach | None = None) -> None:
    """Raise why ``caller`` may not start a conversation with ``target`` (``verdict``: as the
    target's home front end judged it, when that is elsewhere)."""
    if verdict is None:
        verdict = reach(target.current, target.level_for(caller))
    if verdict is Reach.BLOCKED:
        raise PermissionDenied(f"{target.uri} does not accept conversations from {caller.uri}")
    if verdict is Reach.OFFLINE:
        raise FailedPrecondition(f"{target.uri} is offline: no endpoint can take the invitation")
    if verdict is Reach.DO_NOT_DISTURB:
        raise FailedPrecondition(
            f"{target.uri} is in Do Not Disturb: only their Workgroup contacts can reach them"
        )


def session_record(conv: Conversation, now: float) -> ImSessionRecord | None:
    """The call detail record of a two-party session ending (or escalating) at ``now``;
    None when it has no second party."""
    to = conv.session_to
    if to is None:
        return None
    org = conv.organizer
    counts = conv.session_counts
    return ImSessionRecord(
        session_id=conv.id,
        from_uri=org.uri,
        from_endpoint=org.id,
        to_uri=to.uri,
        to_endpoint=conv.session_to_endpoint,
        invite_time=conv.created_at,
        response_time=conv.response_time or now,
        response_code=conv.response_code or 487,
        end_time=now,
        from_message_count=counts.get(org.user.id, 0),
        to_message_count=counts.get(to.id, 0) if conv.response_code == 200 else 0,
        escalated_to=conv.conference_uri,
    )
