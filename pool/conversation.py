"""A conversation as the IMMCU (``pool.immcu``) keeps it, and the rules every front end checks
before one reaches its host: what a message may be, and which routing group an id names.

A conversation's id names its organizer's routing group (``c-g<group>-<random>``): it is
hosted by the front end that holds that group's primary.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pool.directory import User
from pool.errors import InvalidArgument
from pool.events import ChatMessage, Invitation, MessageReceived
from pool.registrar import Endpoint
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


def group_of(conversation_id: str) -> int | None:
    """The routing group of a conversation's organizer, which its id names
    (``c-g<group>-<random>``); None for an id that is not one of ours."""
    head, _, rest = conversation_id.partition("-g")
    digits, dash, _ = rest.partition("-")
    if head != "c" or not dash or not digits.isdigit():
        return None
    return int(digits)


def check_message(body: str, content_type: str, max_chars: int) -> ChatMessage:
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
    return ChatMessage(body, ctype)
