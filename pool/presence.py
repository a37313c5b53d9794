"""Presence: Lync availability numbers, a user's presence states, and their aggregation.

Terms: a *manual* (user) state is what the person picks and wins over everything else;
each signed-in endpoint has a *machine* state (active, inactive, away, off) that idles by
itself on the injected clock; a *calendar* state (in a meeting, out of office) lasts until a
time; a *phone* state says the user is in a call. The server aggregates them into one
availability number on every change (SPEC section 3; Lync's exact precedence is assumed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from pool.errors import InvalidArgument

AVAILABLE = 3500
INACTIVE = 4500  # available, idle
BUSY = 6500
URGENT_ONLY = 6900  # how a Workgroup contact sees Do Not Disturb
BUSY_IDLE = 7500
DND = 9500
BE_RIGHT_BACK = 12500
AWAY = 15500
OFFLINE = 18500

#: what a person may publish as their manual state
USER_AVAILABILITIES = frozenset({AVAILABLE, BUSY, DND, BE_RIGHT_BACK, AWAY, OFFLINE})
CALENDAR_AVAILABILITIES = frozenset({BUSY, AWAY})

ACTIVITIES = frozenset(
    {
        "in-a-meeting",
        "in-a-conference",
        "on-the-phone",
        "out-of-office",
        "urgent-interruptions-only",
        "off-work",
    }
)
MAX_CUSTOM_ACTIVITY = 64

_BANDS = (
    (3000, "Presence unknown"),
    (4500, "Available"),
    (6000, "Inactive"),
    (7500, "Busy"),
    (9000, "Busy, idle"),
    (12000, "Do Not Disturb"),
    (15000, "Be Right Back"),
    (18000, "Away"),
)


def band(availability: int) -> str:
    """How a client shows an aggregated number (SPEC section 3's reading table)."""
    for upper, name in _BANDS:
        if availability < upper:
            return name
    return "Offline"


def is_dnd(availability: int) -> bool:
    return 9000 <= availability < 12000


def is_offline(availability: int) -> bool:
    return availability >= 18000


class MachineState(IntEnum):
    """Ordered from most to least active: the most active endpoint is the lowest."""

    ACTIVE = 1
    INACTIVE = 2
    UNKNOWN = 3
    AWAY = 4
    OFF = 5


_MACHINE_AVAILABILITY = {
    MachineState.ACTIVE: AVAILABLE,
    MachineState.INACTIVE: INACTIVE,
    MachineState.UNKNOWN: AVAILABLE,
    MachineState.AWAY: AWAY,
    MachineState.OFF: OFFLINE,
}


def check_activity(activity: str) -> str:
    if activity and activity not in ACTIVITIES and len(activity) > MAX_CUSTOM_ACTIVITY:
        raise InvalidArgument(
            f"activity {activity[:20]!r}... is {len(activity)} characters: a custom state holds at "
            f"most {MAX_CUSTOM_ACTIVITY}; known tokens are {', '.join(sorted(ACTIVITIES))}"
        )
    return activity


@dataclass(frozen=True, slots=True)
class ManualState:
    availability: int
    activity: str = ""


@dataclass(frozen=True, slots=True)
class CalendarState:
    availability: int
    activity: str
    until: float = 0.0  # wall-clock seconds; 0 = until cleared
    subject: str = ""


@dataclass(slots=True)
class PresenceStates:
    """The persistent and transient presence states of one user."""

    manual: ManualState | None = None  # persistent
    note: str = ""  # persistent
    calendar: CalendarState | None = None
    on_phone: bool = False


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A user's presence as computed by the server, before privacy is applied."""

    availability: int
    activity: str = ""
    note: str = ""
    calendar_until: float = 0.0
    meeting_subject: str = ""
    endpoints: int = 0


OFFLINE_AGGREGATE = Aggregate(OFFLINE)


def aggregate(states: PresenceStates, machines: list[MachineState], now: float) -> Aggregate:
    """Aggregate a user's states (SPEC section 3, rules 1 to 4).

    1. No signed-in endpoint: Offline.  2. A manual state wins.  3. Otherwise the least
    available of calendar, phone and the most active endpoint's machine state.  4. An idle
    machine turns Available into Inactive/Away and Busy into Busy-idle.
    """
    calendar = states.calendar
    if calendar is not None and calendar.until and calendar.until <= now:
        calendar = None
    cal_until = calendar.until if calendar else 0.0
    subject = calendar.subject if calendar else ""
    if not machines:
        return Aggregate(OFFLINE, "", states.note, cal_until, subject, 0)
    count = len(machines)
    if states.manual is not None:
        m = states.manual
        return Aggregate(m.availability, m.activity, states.note, cal_until, subject, count)
    machine = min(machines)
    availability = _MACHINE_AVAILABILITY[machine]
    activity = ""
    if calendar is not None and calendar.availability > availability:
        availability, activity = calendar.availability, calendar.activity
    if states.on_phone and availability < BUSY:
        availability, activity = BUSY, "on-the-phone"
    if availability == BUSY and machine in (MachineState.INACTIVE, MachineState.AWAY):
        availability = BUSY_IDLE
    return Aggregate(availability, activity, states.note, cal_until, subject, count)
