"""SPEC section 3 rule 4, through the engine: idle timers on the fake clock."""

from __future__ import annotations

import pytest

from pool.config import Timers
from pool.errors import InvalidArgument
from pool.events import ChatMessage, Event, PresenceChanged
from pool.presence import AVAILABLE, AWAY, BUSY, BUSY_IDLE, INACTIVE, MachineState
from pool.presence_service import Publication, Source
from pool.privacy import AccessLevel
from pool.registrar import Endpoint

from .conftest import ALICE, BOB, CAROL, Sim, SimFactory, of_type

LONG_REGISTRATION = Timers(registration_expiry=900)


@pytest.fixture
def long_sim(make_sim: SimFactory) -> Sim:
    """Registrations last 900 s, so Away (600 s idle) comes before expiry."""
    return make_sim(timers=LONG_REGISTRATION)


def availabilities(events: list[Event]) -> list[int]:
    return [e.presence.availability for e in of_type(events, PresenceChanged)]


def test_no_input_goes_inactive_at_300_s_then_away_at_600_s(long_sim: Sim) -> None:
    sim = long_sim
    bob = sim.sign_in(BOB)
    sim.advance(299)
    assert sim.user(BOB).current.availability == AVAILABLE
    sim.advance(1)
    assert sim.user(BOB).current.availability == INACTIVE
    assert bob.effective == MachineState.INACTIVE
    sim.advance(299)
    assert sim.user(BOB).current.availability == INACTIVE
    sim.advance(1)
    assert sim.user(BOB).current.availability == AWAY
    assert sim.user(BOB).endpoints == [bob]
    assert sim.user(BOB).endpoints[0].effective == MachineState.AWAY


def test_watcher_gets_one_presence_changed_per_change(long_sim: Sim) -> None:
    sim = long_sim
    bob = sim.sign_in(BOB)
    alice = sim.sign_in(ALICE)
    sim.engine.subscribe(alice, [BOB], 0)
    assert sim.drain(alice) == []
    sim.advance(300)
    first = sim.drain(alice)
    assert first == [PresenceChanged(first[0].presence, sim.clock.now())]  # type: ignore[union-attr]
    assert availabilities(first) == [INACTIVE]
    sim.advance(300)
    assert availabilities(sim.drain(alice)) == [AWAY]
    sim.engine.publish(bob, Publication(source=Source.MACHINE, machine_state=MachineState.ACTIVE))
    events = sim.drain(alice)
    assert availabilities(events) == [AVAILABLE]
    change = of_type(events, PresenceChanged)[0]
    assert change.presence.user_uri == BOB
    assert change.presence.seen_as is AccessLevel.COLLEAGUES
    assert change.at == sim.clock.now()


def test_sending_a_message_brings_an_idle_user_back(long_sim: Sim) -> None:
    sim = long_sim
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    carol = sim.sign_in(CAROL)
    conv = sim.two_party(alice, bob)
    sim.engine.subscribe(carol, [BOB], 0)
    sim.advance(300)
    sim.advance(300)
    assert sim.user(BOB).current.availability == AWAY
    assert availabilities(sim.drain(carol)) == [INACTIVE, AWAY]
    sim.engine.send_message(bob, conv, "back", "text/plain")
    assert sim.user(BOB).current.availability == AVAILABLE
    assert bob.effective == MachineState.ACTIVE
    assert availabilities(sim.drain(carol)) == [AVAILABLE]


def test_input_restarts_the_idle_clock(long_sim: Sim) -> None:
    sim = long_sim
    bob = sim.sign_in(BOB)
    sim.advance(300)
    assert sim.user(BOB).current.availability == INACTIVE
    sim.engine.publish(bob, Publication(source=Source.MACHINE, machine_state=MachineState.ACTIVE))
    assert sim.user(BOB).current.availability == AVAILABLE
    sim.advance(299)
    assert sim.user(BOB).current.availability == AVAILABLE
    sim.advance(1)
    assert sim.user(BOB).current.availability == INACTIVE


def test_manual_available_stays_available_while_idle(long_sim: Sim) -> None:
    sim = long_sim
    bob = sim.sign_in(BOB)
    alice = sim.sign_in(ALICE)
    sim.engine.publish(bob, Publication(source=Source.USER, availability=AVAILABLE))
    sim.engine.subscribe(alice, [BOB], 0)
    sim.advance(300)
    sim.advance(300)
    assert bob.effective == MachineState.AWAY
    assert sim.user(BOB).current.availability == AVAILABLE
    assert of_type(sim.drain(alice), PresenceChanged) == []


def test_meeting_while_idle_becomes_busy_idle(long_sim: Sim) -> None:
    sim = long_sim
    bob = sim.sign_in(BOB)
    sim.engine.publish(
        bob, Publication(source=Source.CALENDAR, availability=BUSY, until=sim.clock.now() + 3600)
    )
    assert sim.user(BOB).current.availability == BUSY
    sim.advance(300)
    assert sim.user(BOB).current.availability == BUSY_IDLE
    sim.advance(300)
    assert sim.user(BOB).current.availability == AWAY


def test_calendar_state_ends_at_until(long_sim: Sim) -> None:
    sim = long_sim
    bob = sim.sign_in(BOB)
    alice = sim.sign_in(ALICE)
    sim.engine.subscribe(alice, [BOB], 0)
    sim.engine.publish(
        bob,
        Publication(
            source=Source.CALENDAR,
            availability=BUSY,
            until=sim.clock.now() + 120,
            meeting_subject="Sync",
        ),
    )
    assert availabilities(sim.drain(alice)) == [BUSY]
    sim.advance(119)
    assert sim.user(BOB).current.availability == BUSY
    sim.advance(1)
    assert sim.user(BOB).current.availability == AVAILABLE
    assert availabilities(sim.drain(alice)) == [AVAILABLE]


def test_open_stream_keeps_the_registration_until_away(sim: Sim) -> None:
    """With the default 600 s registration, an open stream keeps the idle endpoint alive."""
    bob = sim.sign_in(BOB)
    sim.engine.open_stream(bob)
    sim.advance(300)
    assert sim.user(BOB).current.availability == INACTIVE
    sim.advance(300)
    assert not bob.signed_out
    assert sim.user(BOB).current.availability == AWAY


@pytest.mark.timeout(10)
def test_unknown_machine_state_does_not_spin_the_timer_loop(sim: Sim) -> None:
    bob = sim.sign_in(BOB)
    try:
        sim.engine.publish(
            bob, Publication(source=Source.MACHINE, machine_state=MachineState.UNKNOWN)
        )
    except InvalidArgument:
        return  # refusing UNKNOWN (the error message lists ACTIVE, INACTIVE, AWAY, OFF) fixes it
    calls = 0
    real = sim.engine.presence.effective_machine

    def counting(ep: Endpoint, mono: float) -> MachineState:
        nonlocal calls
        calls += 1
        if calls > 100:
            raise RuntimeError("housekeeping ran 100 times without the clock moving")
        return real(ep, mono)

    sim.engine.presence.effective_machine = counting  # type: ignore[method-assign]
    sim.advance(300)
    assert calls <= 2
    assert not bob.signed_out


def test_idle_user_is_still_reachable_by_message(long_sim: Sim) -> None:
    sim = long_sim
    alice = sim.sign_in(ALICE)
    bob = sim.sign_in(BOB)
    sim.advance(600)
    conv, seq = sim.engine.create_conversation(alice, [BOB], "", ChatMessage("there?"))
    assert seq == 1
    assert conv.id in bob.user.invitations
