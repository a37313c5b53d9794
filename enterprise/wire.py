"""What one front end sends another, and what comes back: typed messages, typed replies.

Every message is a frozen slotted dataclass, decoded by its type (``match`` in
``enterprise.handlers``), never by its position in a tuple. A batch is a ``list[Message]``
that travels in one transport call; its answer is one ``Reply`` per message, in order.

A domain error raised on the far side travels back as a ``Failure``: the gRPC status code,
message and metadata the adapter would have sent (``pool.api.status``, the one table), and
becomes the same domain error again on this side, a ``Redirect`` with its home address
included. Across Ray a message travels packed (``pack``: its type's tag, then its fields),
and is unpacked at the far edge (``unpack``) before anything reads it.

Messages (``src`` is always the sending front end):

    Deliver        an event for one endpoint here, from the host of its conversation or the
                   home of a user it watches; reply ``None``, ``GONE`` or ``UNWATCH``
    DeliverToUser  an event for every endpoint of a user homed here (an invitation, its end)
    Views          a poll of users homed here, for a watcher elsewhere; reply the views
    Watch          subscribe a remote endpoint to users homed here; reply the views
    Unwatch        end such subscriptions
    AskReach       may this caller reach those users (homed here); reply the verdicts
    Accept, Decline, Leave, Send, Typing, Invite
                   an operation of a remote participant on a conversation hosted here
    Refuse         a user homed at ``src`` can no longer answer an invitation from here
    DropProxy      an endpoint at ``src`` signed out: forget its stand-in here
    Replicate      writes of a group whose primary is ``src`` (this is a secondary)
    Install        a whole copy of a group (this is its new secondary)
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import grpc

from enterprise.replica import GroupData, Write
from pool.api.status import code_of, error_of
from pool.errors import PoolError
from pool.events import Event
from pool.pickling import by_arguments, field_values
from pool.privacy import PresenceView, Reach
from pool.service import Invited, Joined

# --- messages ---


@by_arguments
@dataclass(frozen=True, slots=True)
class Deliver:
    endpoint_id: str
    event: Event


@by_arguments
@dataclass(frozen=True, slots=True)
class DeliverToUser:
    """``host`` is the conversation's host, whose routing table had ``version``; ``hops``
    counts forwards to a newer home (at most 2)."""

    user_id: int
    event: Event
    host: str
    version: int
    hops: int = 0


@by_arguments
@dataclass(frozen=True, slots=True)
class Views:
    watcher_id: int
    user_ids: tuple[int, ...]


@by_arguments
@dataclass(frozen=True, slots=True)
class Watch:
    endpoint_id: str
    watcher_id: int
    user_ids: tuple[int, ...]


@by_arguments
@dataclass(frozen=True, slots=True)
class Unwatch:
    endpoint_id: str
    user_ids: tuple[int, ...]


@by_arguments
@dataclass(frozen=True, slots=True)
class AskReach:
    caller_id: int
    user_ids: tuple[int, ...]


@by_arguments
@dataclass(frozen=True, slots=True)
class ConversationOp:
    """An operation of endpoint ``endpoint_id`` (of user ``user_id``, homed at the sender)
    on a conversation hosted here."""

    conversation_id: str
    endpoint_id: str
    user_id: int


@by_arguments
@dataclass(frozen=True, slots=True)
class Accept(ConversationOp):
    pass


@by_arguments
@dataclass(frozen=True, slots=True)
class Decline(ConversationOp):
    pass


@by_arguments
@dataclass(frozen=True, slots=True)
class Leave(ConversationOp):
    pass


@by_arguments
@dataclass(frozen=True, slots=True)
class Send(ConversationOp):
    body: str
    content_type: str


@by_arguments
@dataclass(frozen=True, slots=True)
class Typing(ConversationOp):
    typing: bool


@by_arguments
@dataclass(frozen=True, slots=True)
class Invite(ConversationOp):
    """``verdict``: whether the caller may reach the target, as the target's home judged it
    (``None``: the host judges, the target being homed there)."""

    target_id: int
    verdict: Reach | None


@by_arguments
@dataclass(frozen=True, slots=True)
class Refuse:
    user_id: int
    conversation_id: str


@by_arguments
@dataclass(frozen=True, slots=True)
class DropProxy:
    endpoint_id: str
    reason: str


@by_arguments
@dataclass(frozen=True, slots=True)
class Replicate:
    """``group``'s writes after ``since`` up to ``seq`` (a live batch, or a catch-up)."""

    group: int
    seq: int
    writes: tuple[Write, ...]
    since: int


@by_arguments
@dataclass(frozen=True, slots=True)
class Install:
    group: int
    data: GroupData


#: an operation on a conversation hosted at the receiver
ConversationMessage: TypeAlias = Accept | Decline | Leave | Send | Typing | Invite

Message: TypeAlias = (
    Deliver
    | DeliverToUser
    | Views
    | Watch
    | Unwatch
    | AskReach
    | Accept
    | Decline
    | Leave
    | Send
    | Typing
    | Invite
    | Refuse
    | DropProxy
    | Replicate
    | Install
)
#: the name the rest of the code (and older tests) use for one message of a batch
Item: TypeAlias = Message

# --- across Ray: packed at the edge ---

#: a message as it crosses Ray: its type's index in ``MESSAGES``, then its fields. Plain
#: tuples of strings and numbers travel as msgpack, without a pickler per object (Ray pickles
#: each object msgpack cannot hold on its own, which costs more than the rest of the trip).
Packed: TypeAlias = tuple[object, ...]
MESSAGES: tuple[type[Message], ...] = typing.get_args(Message)
_TAGS = {cls: tag for tag, cls in enumerate(MESSAGES)}


_VALUES: dict[type[Message], Callable[[Message], tuple[object, ...]]] = {
    cls: field_values(cls) for cls in MESSAGES
}


def pack(message: Message) -> Packed:
    cls = type(message)
    return (_TAGS[cls], *_VALUES[cls](message))


def unpack(packed: Packed) -> Message:
    tag = packed[0]
    assert isinstance(tag, int)
    return MESSAGES[tag](*packed[1:])  # type: ignore[arg-type]


# --- replies ---


class Delivery(enum.Enum):
    """A ``Deliver``'s reply when the sender has something to tidy up."""

    GONE = "gone"  # that endpoint is no longer here: drop its stand-in
    UNWATCH = "unwatch"  # that endpoint no longer watches that user: drop the watch


GONE = Delivery.GONE
UNWATCH = Delivery.UNWATCH


@by_arguments
@dataclass(frozen=True, slots=True)
class Sent:
    """A ``Send``'s reply: the message's id and sequence in its conversation."""

    message_id: str
    sequence: int


@by_arguments
@dataclass(frozen=True, slots=True)
class Failure:
    """A domain error on the far side, as it travels back: what the gRPC adapter would send
    for it (``pool.api.status``), so it comes back as the same error."""

    code: grpc.StatusCode
    message: str
    metadata: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, exc: PoolError) -> Failure:
        return cls(code_of(exc), exc.message, tuple(sorted(exc.metadata.items())))

    @classmethod
    def internal(cls, message: str) -> Failure:
        return cls(grpc.StatusCode.INTERNAL, message)

    def error(self) -> PoolError:
        return error_of(self.code, self.message, dict(self.metadata))


Reply: TypeAlias = (
    Delivery | Sent | Joined | Invited | list[PresenceView] | list[Reach] | Failure | None
)

# --- the transport ---


class Transport(Protocol):
    """How a front end reaches the others and the fabric (Ray in production; the in-process
    tests call the far node directly). ``fabric`` and ``front_end`` are typed by
    ``FabricCalls``; ``exchange`` carries one batch of a ``Link``; ``post`` one of posts only
    without waiting, where the transport keeps batches in order by itself."""

    async def exchange(self, dst: str, src: str, items: list[Message]) -> Sequence[Reply]: ...

    def post(
        self,
        dst: str,
        src: str,
        items: list[Message],
        on_reply: Callable[[str, Message, Reply], None],
    ) -> bool:
        """Send a batch of posts and wait for nothing; replies worth acting on come back to
        ``on_reply`` later. False when it cannot now (then the link exchanges it)."""
        ...

    async def fabric(self, method: str, *args: Any) -> Any: ...

    async def front_end(self, dst: str, method: str, *args: Any) -> Any: ...
