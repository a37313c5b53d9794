"""SPEC section 3: the pure aggregation rules and the reading table."""

from __future__ import annotations

import pytest

from pool.presence import (
    AVAILABLE,
    AWAY,
    BUSY,
    BUSY_IDLE,
    DND,
    INACTIVE,
    OFFLINE,
    Aggregate,
    CalendarState,
    MachineState,
    ManualState,
    PresenceStates,
    aggregate,
    band,
)

NOW = 1_800_000_000.0
M = MachineState


def test_no_endpoint_is_offline_even_with_a_manual_state() -> None:
    states = PresenceStates(manual=ManualState(BUSY), note="back at 3")
    assert aggregate(states, [], NOW) == Aggregate(OFFLINE, "", "back at 3", 0.0, "", 0)


def test_no_endpoint_is_offline_without_states() -> None:
    assert aggregate(PresenceStates(), [], NOW).availability == OFFLINE


def test_single_active_endpoint_is_available() -> None:
    assert aggregate(PresenceStates(), [M.ACTIVE], NOW) == Aggregate(AVAILABLE, endpoints=1)


@pytest.mark.parametrize("machine", [M.INACTIVE, M.AWAY, M.OFF])
def test_manual_available_stays_available_while_idle(machine: MachineState) -> None:
    states = PresenceStates(manual=ManualState(AVAILABLE))
    assert aggregate(states, [machine], NOW).availability == AVAILABLE


def test_manual_state_wins_over_calendar_and_phone() -> None:
    states = PresenceStates(
        manual=ManualState(DND, "presenting"),
        calendar=CalendarState(AWAY, "out-of-office"),
        on_phone=True,
    )
    agg = aggregate(states, [M.ACTIVE, M.ACTIVE], NOW)
    assert (agg.availability, agg.activity, agg.endpoints) == (DND, "presenting", 2)


def test_manual_available_wins_over_a_meeting() -> None:
    states = PresenceStates(
        manual=ManualState(AVAILABLE), calendar=CalendarState(BUSY, "in-a-meeting")
    )
    assert aggregate(states, [M.ACTIVE], NOW).availability == AVAILABLE


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (M.ACTIVE, AVAILABLE),
        (M.INACTIVE, INACTIVE),
        (M.UNKNOWN, AVAILABLE),
        (M.AWAY, AWAY),
        (M.OFF, OFFLINE),
    ],
)
def test_machine_state_alone(machine: MachineState, expected: int) -> None:
    assert aggregate(PresenceStates(), [machine], NOW).availability == expected


def test_calendar_busy_is_less_available_than_an_active_machine() -> None:
    states = PresenceStates(calendar=CalendarState(BUSY, "in-a-meeting", 0.0, "Budget"))
    agg = aggregate(states, [M.ACTIVE], NOW)
    assert agg == Aggregate(BUSY, "in-a-meeting", "", 0.0, "Budget", 1)


def test_away_machine_is_less_available_than_a_meeting() -> None:
    states = PresenceStates(calendar=CalendarState(BUSY, "in-a-meeting"))
    agg = aggregate(states, [M.AWAY], NOW)
    assert (agg.availability, agg.activity) == (AWAY, "")


def test_out_of_office_is_less_available_than_the_phone() -> None:
    states = PresenceStates(calendar=CalendarState(AWAY, "out-of-office"), on_phone=True)
    agg = aggregate(states, [M.ACTIVE], NOW)
    assert (agg.availability, agg.activity) == (AWAY, "out-of-office")


def test_phone_makes_an_active_user_busy() -> None:
    agg = aggregate(PresenceStates(on_phone=True), [M.ACTIVE], NOW)
    assert (agg.availability, agg.activity) == (BUSY, "on-the-phone")


def test_meeting_and_phone_together_stay_busy() -> None:
    states = PresenceStates(calendar=CalendarState(BUSY, "in-a-meeting"), on_phone=True)
    assert aggregate(states, [M.ACTIVE], NOW).availability == BUSY


@pytest.mark.parametrize(
    ("machines", "expected"),
    [
        ([M.AWAY, M.ACTIVE], AVAILABLE),
        ([M.OFF, M.INACTIVE], INACTIVE),
        ([M.OFF, M.AWAY], AWAY),
        ([M.INACTIVE, M.UNKNOWN], INACTIVE),  # active < inactive < unknown < away < off
        ([M.AWAY, M.UNKNOWN, M.OFF], AVAILABLE),
        ([M.OFF, M.OFF], OFFLINE),
    ],
)
def test_most_active_endpoint_wins(machines: list[MachineState], expected: int) -> None:
    agg = aggregate(PresenceStates(), machines, NOW)
    assert agg.availability == expected
    assert agg.endpoints == len(machines)


def test_meeting_while_idle_is_busy_idle() -> None:
    states = PresenceStates(calendar=CalendarState(BUSY, "in-a-meeting"))
    agg = aggregate(states, [M.INACTIVE], NOW)
    assert (agg.availability, agg.activity) == (BUSY_IDLE, "in-a-meeting")


def test_phone_while_idle_is_busy_idle() -> None:
    assert aggregate(PresenceStates(on_phone=True), [M.INACTIVE], NOW).availability == BUSY_IDLE


def test_busy_with_one_active_endpoint_is_not_idle() -> None:
    states = PresenceStates(on_phone=True)
    assert aggregate(states, [M.INACTIVE, M.ACTIVE], NOW).availability == BUSY


def test_calendar_ends_at_until() -> None:
    meeting = CalendarState(BUSY, "in-a-meeting", NOW + 60, "Standup")
    states = PresenceStates(calendar=meeting)
    before = aggregate(states, [M.ACTIVE], NOW + 59.9)
    assert (before.availability, before.calendar_until, before.meeting_subject) == (
        BUSY,
        NOW + 60,
        "Standup",
    )
    at_end = aggregate(states, [M.ACTIVE], NOW + 60)
    assert at_end == Aggregate(AVAILABLE, "", "", 0.0, "", 1)


def test_calendar_without_until_never_ends() -> None:
    states = PresenceStates(calendar=CalendarState(AWAY, "out-of-office"))
    assert aggregate(states, [M.ACTIVE], NOW + 10**9).availability == AWAY


def test_note_is_kept_in_the_aggregate() -> None:
    agg = aggregate(PresenceStates(note="on leave"), [M.ACTIVE], NOW)
    assert agg.note == "on leave"


@pytest.mark.parametrize(
    ("availability", "shown"),
    [
        (0, "Presence unknown"),
        (2999, "Presence unknown"),
        (3000, "Available"),
        (3500, "Available"),
        (4499, "Available"),
        (4500, "Inactive"),
        (5999, "Inactive"),
        (6000, "Busy"),
        (6900, "Busy"),
        (7499, "Busy"),
        (7500, "Busy, idle"),
        (8999, "Busy, idle"),
        (9000, "Do Not Disturb"),
        (11999, "Do Not Disturb"),
        (12000, "Be Right Back"),
        (14999, "Be Right Back"),
        (15000, "Away"),
        (17999, "Away"),
        (18000, "Offline"),
        (18500, "Offline"),
        (32000, "Offline"),
    ],
)
def test_band_reading_table(availability: int, shown: str) -> None:
    assert band(availability) == shown
