"""Domain objects -> protobuf messages (and the few the other way).

Every conversion here must succeed for any value the domain may hold: a reply that cannot be
built fails every later read of that state (a calendar end out of the Timestamp range once
made a user's presence unreadable). Times are clamped into the Timestamp range, reason strings
map to ``EndReason`` (UNSPECIFIED for one this table does not know).
"""

from __future__ import annotations

import math
from collections import OrderedDict

from google.protobuf.timestamp_pb2 import Timestamp

from pool import cdr, events, status
from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.api.validate import TS_MAX, TS_MIN
from pool.errors import InvalidArgument
from pool.presence import MachineState
from pool.presence_service import ContactView, Publication, Source
from pool.privacy import PresenceView


def ts(seconds: float) -> Timestamp:
    """A Timestamp for any float: clamped into the Timestamp range (NaN: the epoch)."""
    whole, nanos = _split(seconds)
    return Timestamp(seconds=whole, nanos=nanos)


def _split(seconds: float) -> tuple[int, int]:
    if not TS_MIN <= seconds < TS_MAX:  # also NaN
        return (TS_MAX, 0) if seconds >= TS_MAX else (0 if math.isnan(seconds) else TS_MIN, 0)
    whole = math.floor(seconds)
    return whole, min(int((seconds - whole) * 1e9), 999_999_999)


def seconds(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


#: the domain's reason strings (pool.engine.Reason, pool.immcu, enterprise.node) on the wire
END_REASONS: dict[str, pb.EndReason.ValueType] = {
    "left": pb.END_REASON_LEFT,
    "declined": pb.END_REASON_DECLINED,
    "no-answer": pb.END_REASON_NO_ANSWER,
    "cancelled": pb.END_REASON_CANCELLED,
    "signed-out": pb.END_REASON_SIGNED_OUT,
    "accepted-on-another-endpoint": pb.END_REASON_ACCEPTED_ON_ANOTHER_ENDPOINT,
    "host-changed": pb.END_REASON_HOST_CHANGED,
    "connection-lost": pb.END_REASON_CONNECTION_LOST,
    "client-initiated": pb.END_REASON_CLIENT_INITIATED,
    "registration-expired": pb.END_REASON_REGISTRATION_EXPIRED,
    "flow-controlled": pb.END_REASON_FLOW_CONTROLLED,
    "server-shutdown": pb.END_REASON_SERVER_SHUTDOWN,
    "home-server-changed": pb.END_REASON_HOME_SERVER_CHANGED,
}
#: and back, for clients
REASON_NAMES: dict[int, str] = {v: k for k, v in END_REASONS.items()}


def end_reason(reason: str) -> pb.EndReason.ValueType:
    return END_REASONS.get(reason, pb.END_REASON_UNSPECIFIED)


def presence(v: PresenceView) -> pb.Presence:
    msg = pb.Presence(
        user_uri=v.user_uri,
        availability=v.availability,
        activity=v.activity,
        note=v.note,
        seen_as=pb.AccessLevel.ValueType(v.seen_as),
        meeting_subject=v.meeting_subject,
        endpoints=v.endpoints,
    )
    if v.calendar_until:
        msg.calendar_until.CopyFrom(ts(v.calendar_until))
    return msg


def contact(c: ContactView) -> pb.Contact:
    return pb.Contact(
        user_uri=c.user_uri, access_level=pb.AccessLevel.ValueType(c.access_level), group=c.group
    )


_MACHINE = {
    pb.MACHINE_STATE_ACTIVE: MachineState.ACTIVE,
    pb.MACHINE_STATE_INACTIVE: MachineState.INACTIVE,
    pb.MACHINE_STATE_AWAY: MachineState.AWAY,
    pb.MACHINE_STATE_OFF: MachineState.OFF,
}


_SOURCE = {
    pb.PRESENCE_SOURCE_UNSPECIFIED: Source.USER,  # as documented: not set means USER
    pb.PRESENCE_SOURCE_USER: Source.USER,
    pb.PRESENCE_SOURCE_MACHINE: Source.MACHINE,
    pb.PRESENCE_SOURCE_CALENDAR: Source.CALENDAR,
    pb.PRESENCE_SOURCE_PHONE: Source.PHONE,
}


def publication(req: pb.PublishPresenceRequest) -> Publication:
    source = _SOURCE.get(req.source)
    if source is None:
        raise InvalidArgument(
            f"source {req.source} is not a presence source: use PRESENCE_SOURCE_USER, "
            "MACHINE, CALENDAR or PHONE"
        )
    return Publication(
        source=source,
        availability=req.availability,
        activity=req.activity,
        note=req.note if req.HasField("note") else None,
        machine_state=_MACHINE.get(req.machine_state),
        until=seconds(req.until) if req.HasField("until") else 0.0,
        meeting_subject=req.meeting_subject,
    )


def _message(m: events.ChatMessage | None) -> pb.Message | None:
    return pb.Message(body=m.body, content_type=m.content_type) if m else None


SHARED_CACHE = 4096
_SHARED_BYTES: OrderedDict[int, tuple[events.Event, bytes]] = OrderedDict()


def shared_event_bytes(e: events.Event) -> bytes:
    """``event(e)`` serialized, once however many streams it is written to.

    The engine queues one event object for every recipient of a fan-out (a presence change to
    80 watchers, a conference message); each stream asks for its wire form. The cache keeps
    the event itself, so its id cannot be reused while the entry lives.
    """
    hit = _SHARED_BYTES.get(id(e))
    if hit is not None and hit[0] is e:
        return hit[1]
    data = event(e).SerializeToString()
    _SHARED_BYTES[id(e)] = (e, data)
    if len(_SHARED_BYTES) > SHARED_CACHE:
        _SHARED_BYTES.popitem(last=False)
    return data


def event(e: events.Event) -> pb.Event:
    """The wire form of a domain event."""
    # Fields are set in place: building sub-messages and copying them in costs twice as much,
    # and every message of a conversation comes through here.
    out = pb.Event()
    whole, nanos = _split(e.at)
    stamp = out.time
    stamp.seconds = whole
    stamp.nanos = nanos
    match e:
        case events.MessageReceived():
            msg = out.message
            msg.conversation_id = e.conversation_id
            msg.sender = e.sender
            msg.sequence = e.sequence
            msg.message_id = e.message_id
            msg.body = e.body
            msg.content_type = e.content_type
            sent_at = msg.sent_at
            sent_at.seconds = whole
            sent_at.nanos = nanos
        case events.Invitation():
            inv = pb.Invitation(
                conversation_id=e.conversation_id,
                inviter=e.inviter,
                first_message=_message(e.first_message),
                subject=e.subject,
                conference_uri=e.conference_uri,
                participants=e.participants,
            )
            out.invitation.CopyFrom(inv)
        case events.ParticipantJoined():
            out.participant_joined.CopyFrom(
                pb.ParticipantJoined(conversation_id=e.conversation_id, user_uri=e.user_uri)
            )
        case events.ParticipantLeft():
            out.participant_left.CopyFrom(
                pb.ParticipantLeft(
                    conversation_id=e.conversation_id,
                    user_uri=e.user_uri,
                    reason=end_reason(e.reason),
                )
            )
        case events.ConversationEscalated():
            out.escalated.CopyFrom(
                pb.ConversationEscalated(
                    conversation_id=e.conversation_id, conference_uri=e.conference_uri
                )
            )
        case events.ConversationEnded():
            out.ended.CopyFrom(
                pb.ConversationEnded(conversation_id=e.conversation_id, reason=end_reason(e.reason))
            )
        case events.TypingChanged():
            out.typing.CopyFrom(
                pb.TypingChanged(
                    conversation_id=e.conversation_id, user_uri=e.user_uri, typing=e.typing
                )
            )
        case events.PresenceChanged():
            out.presence.CopyFrom(pb.PresenceChanged(presence=presence(e.presence)))
        case events.EventsDropped():
            out.dropped.CopyFrom(pb.EventsDropped(count=e.count))
        case events.SignedOut():
            out.signed_out.CopyFrom(pb.SignedOut(reason=end_reason(e.reason)))
    return out


_FE_STATE = {
    status.FrontEndState.STARTING: apb.FRONT_END_STATE_STARTING,
    status.FrontEndState.UP: apb.FRONT_END_STATE_UP,
    status.FrontEndState.DRAINING: apb.FRONT_END_STATE_DRAINING,
    status.FrontEndState.DOWN: apb.FRONT_END_STATE_DOWN,
}
_GROUP_STATE = {
    status.GroupState.HEALTHY: apb.ROUTING_GROUP_STATE_HEALTHY,
    status.GroupState.DEGRADED: apb.ROUTING_GROUP_STATE_DEGRADED,
    status.GroupState.QUORUM_LOSS: apb.ROUTING_GROUP_STATE_QUORUM_LOSS,
}
_QUORUM = {
    status.QuorumState.WAITING_FOR_FIRST_START: apb.QUORUM_STATE_WAITING_FOR_FIRST_START,
    status.QuorumState.HAS_QUORUM: apb.QUORUM_STATE_HAS_QUORUM,
    status.QuorumState.LOST: apb.QUORUM_STATE_LOST,
}
_EDITION = {"standard": apb.EDITION_STANDARD, "enterprise": apb.EDITION_ENTERPRISE}


def pool_status(s: status.PoolStatusInfo) -> apb.PoolStatus:
    return apb.PoolStatus(
        edition=_EDITION.get(s.edition, apb.EDITION_UNSPECIFIED),
        pool_name=s.pool_name,
        front_ends=[
            apb.FrontEndStatus(
                id=f.id,
                address=f.address,
                metrics_address=f.metrics_address,
                state=_FE_STATE[f.state],
                primaries=f.primaries,
                secondaries=f.secondaries,
                endpoints=f.endpoints,
                start_order=f.start_order,
            )
            for f in s.front_ends
        ],
        routing_groups=[
            apb.RoutingGroupStatus(
                id=g.id,
                primary=g.primary,
                secondaries=g.secondaries,
                state=_GROUP_STATE[g.state],
                users=g.users,
            )
            for g in s.routing_groups
        ],
        quorum=_QUORUM[s.quorum],
        quorum_detail=s.quorum_detail,
        users_provisioned=s.users_provisioned,
        endpoints_signed_in=s.endpoints_signed_in,
        details=s.extra,
        users_signed_in=s.users_signed_in,
        started_at=ts(s.started_at),
    )


def call_detail_record(r: cdr.StoredRecord) -> apb.CallDetailRecord:
    out = apb.CallDetailRecord(id=r.id, time=ts(r.time))
    rec = r.record
    match rec:
        case cdr.ImSessionRecord():
            out.im_session.CopyFrom(
                apb.ImSessionRecord(
                    session_id=rec.session_id,
                    from_uri=rec.from_uri,
                    from_endpoint=rec.from_endpoint,
                    to_uri=rec.to_uri,
                    to_endpoint=rec.to_endpoint,
                    invite_time=ts(rec.invite_time),
                    response_time=ts(rec.response_time),
                    response_code=rec.response_code,
                    end_time=ts(rec.end_time),
                    from_message_count=rec.from_message_count,
                    to_message_count=rec.to_message_count,
                    media_type=rec.media_type,
                    escalated_to=rec.escalated_to,
                )
            )
        case cdr.ConferenceRecord():
            out.conference.CopyFrom(
                apb.ConferenceRecord(
                    conference_uri=rec.conference_uri,
                    start_time=ts(rec.start_time),
                    end_time=ts(rec.end_time),
                    organizer=rec.organizer,
                    pool=rec.pool,
                )
            )
        case cdr.ConferenceJoinRecord():
            out.conference_join.CopyFrom(
                apb.ConferenceJoinRecord(
                    conference_uri=rec.conference_uri,
                    user_uri=rec.user_uri,
                    endpoint_id=rec.endpoint_id,
                    join_time=ts(rec.join_time),
                    leave_time=ts(rec.leave_time),
                )
            )
        case cdr.ConferenceMessageCountRecord():
            out.conference_messages.CopyFrom(
                apb.ConferenceMessageCountRecord(
                    conference_uri=rec.conference_uri,
                    user_uri=rec.user_uri,
                    message_count=rec.message_count,
                )
            )
        case cdr.RegistrationRecord():
            out.registration.CopyFrom(
                apb.RegistrationRecord(
                    user_uri=rec.user_uri,
                    endpoint_id=rec.endpoint_id,
                    device=rec.device,
                    registrar=rec.registrar,
                    is_primary_registrar=rec.is_primary_registrar,
                    register_time=ts(rec.register_time),
                    deregister_time=ts(rec.deregister_time),
                    deregister_reason=end_reason(rec.deregister_reason),
                )
            )
    return out
