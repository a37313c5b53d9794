"""What travels between front ends pickles by its constructor's arguments (pool.pickling):
events, presence views, store rows, replica tombstones, link messages. Pure: no sockets."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import pickletools
import typing

import pytest

from enterprise import wire
from enterprise.replica import ConferenceEnded, ContactDeleted
from pool import events
from pool.pickling import by_arguments
from pool.privacy import AccessLevel, PresenceView
from pool.service import Invited, Joined
from pool.store import ConferenceRow, ContactRow, PresenceRow

VIEW = PresenceView("sip:a@contoso.com", 3500, "in-a-meeting", "note", AccessLevel.WORKGROUP)
SAMPLES: list[object] = [
    events.ChatMessage("hi"),
    events.Invitation("c-1", "sip:a", events.ChatMessage("hi", "text/x"), "s", "", ("a",), 1.0),
    events.MessageReceived("c-1", "sip:a", 3, "m-3", "hi", "text/plain", 2.0),
    events.ParticipantJoined("c-1", "sip:b", 3.0),
    events.ParticipantLeft("c-1", "sip:b", "left", 4.0),
    events.ConversationEscalated("c-1", "sip:conf", 5.0),
    events.ConversationEnded("c-1", "left", 6.0),
    events.TypingChanged("c-1", "sip:b", True, 7.0),
    events.PresenceChanged(VIEW, 8.0),
    events.EventsDropped(4, 9.0),
    events.SignedOut("expired", 10.0),
    VIEW,
    ContactRow(1, 2, 300, "Team"),
    PresenceRow(1, 6500, "", "away"),
    ConferenceRow("c-1", 1, "sip:conf", "plan", 5.0, (1, 2)),
    ContactDeleted(1, 2),
    ConferenceEnded("c-1"),
    Joined(("sip:a", "sip:b"), "sip:conf"),
    Invited(True, "sip:conf"),
    wire.Deliver("ep-1", events.MessageReceived("c-1", "sip:a", 3, "m-3", "hi", "text/plain", 2.0)),
]


def _ops(data: bytes) -> set[str]:
    return {op.name for op, _, _ in pickletools.genops(data)}


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_it_pickles_as_a_constructor_call_and_comes_back_equal(value: object) -> None:
    data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    # a slotted dataclass's default pickling sets its state afterwards (BUILD, then Python's
    # field-by-field __setstate__): these are built by the constructor alone
    assert "BUILD" not in _ops(data)
    back = pickle.loads(data)
    assert back == value
    assert type(back) is type(value)
    assert copy.deepcopy(value) == value


def test_every_event_kind_is_covered() -> None:
    kinds = set(typing.get_args(events.Event))
    assert kinds <= {type(v) for v in SAMPLES}


def test_a_field_outside_the_constructor_is_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Odd:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError, match="__init__ argument"):
        by_arguments(Odd)
