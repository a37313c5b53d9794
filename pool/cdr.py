"""Call detail records (SPEC section 4): what the monitoring server keeps.

Each record is written once, when it is complete. Times are wall-clock seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ImSessionRecord:
    """One two-party IM session."""

    session_id: str
    from_uri: str
    from_endpoint: str
    to_uri: str
    to_endpoint: str
    invite_time: float
    response_time: float
    response_code: int  # 200 accepted, 603 declined, 408 no answer, 487 cancelled
    end_time: float
    from_message_count: int
    to_message_count: int
    media_type: str = "IM"
    escalated_to: str = ""


@dataclass(frozen=True, slots=True)
class ConferenceRecord:
    conference_uri: str
    start_time: float
    end_time: float
    organizer: str
    pool: str


@dataclass(frozen=True, slots=True)
class ConferenceJoinRecord:
    conference_uri: str
    user_uri: str
    endpoint_id: str
    join_time: float
    leave_time: float


@dataclass(frozen=True, slots=True)
class ConferenceMessageCountRecord:
    conference_uri: str
    user_uri: str
    message_count: int


@dataclass(frozen=True, slots=True)
class RegistrationRecord:
    user_uri: str
    endpoint_id: str
    device: str
    registrar: str
    is_primary_registrar: bool
    register_time: float
    deregister_time: float
    deregister_reason: str


CdrRecord = (
    ImSessionRecord
    | ConferenceRecord
    | ConferenceJoinRecord
    | ConferenceMessageCountRecord
    | RegistrationRecord
)

RECORD_TYPES: dict[str, type[CdrRecord]] = {
    "im_session": ImSessionRecord,
    "conference": ConferenceRecord,
    "conference_join": ConferenceJoinRecord,
    "conference_messages": ConferenceMessageCountRecord,
    "registration": RegistrationRecord,
}
KIND_OF: dict[type[CdrRecord], str] = {cls: kind for kind, cls in RECORD_TYPES.items()}


@dataclass(frozen=True, slots=True)
class StoredRecord:
    id: int
    time: float
    record: CdrRecord
