"""Privacy relationships ("access levels") and the presence each level may see.

A user puts each contact in a level (by Lync container id); the level decides what that
contact sees of the user. Without one, people of the same domain are Colleagues and everyone
else External (SPEC section 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from pool.pickling import by_arguments
from pool.presence import DND, OFFLINE, URGENT_ONLY, Aggregate, is_dnd, is_offline


class AccessLevel(IntEnum):
    UNSPECIFIED = 0
    EXTERNAL = 100
    COLLEAGUES = 200
    WORKGROUP = 300
    FRIENDS_AND_FAMILY = 400
    BLOCKED = 32000


def default_level(owner_domain: str, watcher_domain: str) -> AccessLevel:
    return AccessLevel.COLLEAGUES if owner_domain == watcher_domain else AccessLevel.EXTERNAL


@by_arguments
@dataclass(frozen=True, slots=True)
class PresenceView:
    """A user's presence as one watcher may see it."""

    user_uri: str
    availability: int
    activity: str
    note: str
    seen_as: AccessLevel
    calendar_until: float = 0.0
    meeting_subject: str = ""
    endpoints: int = 0


def view(
    user_uri: str, agg: Aggregate, level: AccessLevel, *, is_self: bool = False
) -> PresenceView:
    """What a watcher at ``level`` sees of ``agg``; ``is_self`` sees everything."""
    if is_self:
        return PresenceView(
            user_uri,
            agg.availability,
            agg.activity,
            agg.note,
            level,
            agg.calendar_until,
            agg.meeting_subject,
            agg.endpoints,
        )
    if level is AccessLevel.BLOCKED:
        return PresenceView(user_uri, OFFLINE, "", "", level)
    if level is AccessLevel.EXTERNAL:
        return PresenceView(user_uri, agg.availability, "", "", level)
    availability, activity = agg.availability, agg.activity
    if level is AccessLevel.WORKGROUP and is_dnd(availability):
        availability, activity = URGENT_ONLY, "urgent-interruptions-only"
    if level is AccessLevel.WORKGROUP:
        return PresenceView(
            user_uri,
            availability,
            activity,
            agg.note,
            level,
            agg.calendar_until,
            agg.meeting_subject,
            agg.endpoints,
        )
    return PresenceView(user_uri, availability, activity, agg.note, level, 0.0, "", agg.endpoints)


class Reach(IntEnum):
    OK = 0
    BLOCKED = 1
    DO_NOT_DISTURB = 2
    OFFLINE = 3


def reach(agg: Aggregate, level: AccessLevel) -> Reach:
    """Whether someone at ``level`` may start a conversation with the user."""
    if level is AccessLevel.BLOCKED:
        return Reach.BLOCKED
    if is_offline(agg.availability):
        return Reach.OFFLINE
    if is_dnd(agg.availability) and level is not AccessLevel.WORKGROUP:
        return Reach.DO_NOT_DISTURB
    return Reach.OK


__all__ = ["DND", "AccessLevel", "PresenceView", "Reach", "default_level", "reach", "view"]
