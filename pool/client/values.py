"""What the client's calls return: plain frozen values read from the replies."""

from __future__ import annotations

from dataclasses import dataclass

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.privacy import AccessLevel


@dataclass(frozen=True, slots=True)
class Presence:
    user_uri: str
    availability: int
    activity: str
    note: str
    seen_as: AccessLevel
    endpoints: int
    meeting_subject: str = ""
    calendar_until: float = 0.0

    @classmethod
    def of(cls, m: pb.Presence) -> Presence:
        until = m.calendar_until.seconds + m.calendar_until.nanos / 1e9
        return cls(
            m.user_uri,
            m.availability,
            m.activity,
            m.note,
            AccessLevel(m.seen_as),
            m.endpoints,
            m.meeting_subject,
            until,
        )


@dataclass(frozen=True, slots=True)
class Contact:
    user_uri: str
    access_level: AccessLevel
    group: str


@dataclass(frozen=True, slots=True)
class Conversation:
    conversation_id: str
    conference_uri: str
    message_id: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Sent:
    message_id: str
    sequence: int
