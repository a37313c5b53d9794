"""The typed wire between front ends: a failure on the far side comes back as the same domain
error (mapped through the gRPC adapter's table, so a redirect keeps its home), and every
message type has its handler. Pure: no Ray, no sockets."""

from __future__ import annotations

import dataclasses
import pickle
import typing

import pytest

from enterprise import wire
from enterprise.handlers import Handlers
from enterprise.wire import Failure
from pool import errors


@pytest.mark.parametrize(
    "error",
    [
        errors.InvalidArgument("bad"),
        errors.NotFound("unknown conversation c-g1-x: it ended"),
        errors.PermissionDenied("no"),
        errors.FailedPrecondition("offline"),
        errors.ResourceExhausted("full"),
        errors.Unavailable("pool quorum lost"),
    ],
)
def test_a_domain_error_comes_back_as_itself(error: errors.PoolError) -> None:
    back = Failure.of(error).error()
    assert type(back) is type(error)
    assert back.message == error.message


def test_a_redirect_keeps_its_home_address() -> None:
    redirect = errors.Redirect("sip:a@x.com", "10.0.0.2:5062", "fe2", "homed on fe2: sign in there")
    back = Failure.of(redirect).error()
    assert isinstance(back, errors.Redirect)
    assert (back.home_address, back.front_end_id) == ("10.0.0.2:5062", "fe2")
    assert back.message == redirect.message


def test_a_bug_on_the_far_side_is_an_internal_error() -> None:
    back = Failure.internal("internal error handling Watch").error()
    assert type(back) is errors.PoolError


def test_messages_are_frozen_and_slotted() -> None:
    for cls in typing.get_args(wire.Message):
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert "__slots__" in cls.__dict__, cls


def test_every_message_has_its_handler() -> None:
    source = Handlers._one.__code__.co_names
    for cls in typing.get_args(wire.Message):
        assert cls.__name__ in source, f"no case for {cls.__name__}"


def test_messages_and_replies_survive_pickling() -> None:
    """As they cross Ray: by their constructor's arguments (``pool.pickling``)."""
    from enterprise.replica import ContactDeleted, GroupData
    from pool.events import ConversationEnded
    from pool.privacy import Reach

    sent = [
        wire.Deliver("ep-1", ConversationEnded("c-g1-x", "left", 1.0)),
        wire.DeliverToUser(7, ConversationEnded("c-g1-x", "left", 1.0), "fe2", 3, 1),
        wire.Watch("ep-1", 7, (1, 2)),
        wire.Accept("c-g1-x", "ep-1", 7),
        wire.Send("c-g1-x", "ep-1", 7, "hi", "text/plain"),
        wire.Invite("c-g1-x", "ep-1", 7, 8, Reach.OK),
        wire.Typing("c-g1-x", "ep-1", 7, True),
        wire.Replicate(1, 5, (ContactDeleted(7, 8),), 4),
        wire.Install(1, GroupData()),
        wire.Sent("c-g1-x:1", 1),
        Failure.of(errors.Redirect("", "h:1", "fe2")),
    ]
    back = pickle.loads(pickle.dumps(sent, protocol=5))
    assert back == sent
    assert [type(m) for m in back] == [type(m) for m in sent]
    messages = [m for m in sent if isinstance(m, wire.MESSAGES)]
    packed = [wire.pack(m) for m in messages]
    assert all(type(p) is tuple for p in packed)
    assert packed[0][1:] == ("ep-1", ConversationEnded("c-g1-x", "left", 1.0))
    assert [wire.unpack(p) for p in pickle.loads(pickle.dumps(packed))] == messages
