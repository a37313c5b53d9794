"""What an endpoint is told, and the bounded queue that holds it until the endpoint reads.

Each endpoint has one ``EventQueue`` of fixed capacity. When it is full, further events are
dropped and counted; the reader then gets one ``EventsDropped`` with the count, in the place
where the events went missing. Memory per endpoint is bounded by the capacity (plus one
marker). A reader is woken through ``waker``, a plain callable the transport sets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, fields
from typing import TypeVar

from pool.pickling import by_arguments
from pool.privacy import PresenceView

_T = TypeVar("_T")


def _slot_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass an ``__init__`` that stores each field through its slot
    descriptor. The generated one calls ``object.__setattr__`` per field (frozen forbids plain
    assignment), which costs about twice as much; events are made once per message and
    recipient group, on the routing path. Same signature, defaults and checks otherwise."""
    params, body = [], []
    env: dict[str, object] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.default is not MISSING:
            env[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        else:
            params.append(f.name)
        env[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, env)  # the source is built from the class's own field names
    init = env["__init__"]
    setattr(init, "__qualname__", f"{cls.__qualname__}.__init__")  # noqa: B010
    setattr(cls, "__init__", init)  # noqa: B010
    return cls


@_slot_init
@by_arguments
@dataclass(frozen=True, slots=True)
class ChatMessage:
    body: str
    content_type: str = "text/plain"


@by_arguments
@dataclass(frozen=True, slots=True)
class Invitation:
    conversation_id: str
    inviter: str
    first_message: ChatMessage | None
    subject: str
    conference_uri: str
    participants: tuple[str, ...]
    at: float


@_slot_init
@by_arguments
@dataclass(frozen=True, slots=True)
class MessageReceived:
    conversation_id: str
    sender: str
    sequence: int
    message_id: str
    body: str
    content_type: str
    at: float


@by_arguments
@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    conversation_id: str
    user_uri: str
    at: float


@by_arguments
@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    conversation_id: str
    user_uri: str
    reason: str
    at: float


@by_arguments
@dataclass(frozen=True, slots=True)
class ConversationEscalated:
    conversation_id: str
    conference_uri: str
    at: float


@by_arguments
@dataclass(frozen=True, slots=True)
class ConversationEnded:
    conversation_id: str
    reason: str
    at: float


@by_arguments
@dataclass(frozen=True, slots=True)
class TypingChanged:
    conversation_id: str
    user_uri: str
    typing: bool
    at: float


@by_arguments
@dataclass(frozen=True, slots=True)
class PresenceChanged:
    presence: PresenceView
    at: float


@by_arguments
@dataclass(frozen=True, slots=True)
class EventsDropped:
    count: int
    at: float


@by_arguments
@dataclass(frozen=True, slots=True)
class SignedOut:
    reason: str
    at: float


Event = (
    Invitation
    | MessageReceived
    | ParticipantJoined
    | ParticipantLeft
    | ConversationEscalated
    | ConversationEnded
    | TypingChanged
    | PresenceChanged
    | EventsDropped
    | SignedOut
)

#: the events about one conversation (each has its ``conversation_id``)
ConversationEvent = (
    Invitation
    | MessageReceived
    | ParticipantJoined
    | ParticipantLeft
    | ConversationEscalated
    | ConversationEnded
    | TypingChanged
)


def conversation_of(event: Event) -> str:
    """The conversation an event is about; "" for presence and the stream's own events."""
    if isinstance(event, ConversationEvent):
        return event.conversation_id
    return ""


class _Dropped:
    """The queue's running count of events dropped at this place in the stream."""

    __slots__ = ("at", "count")

    def __init__(self, at: float) -> None:
        self.count = 0
        self.at = at


class EventQueue:
    """A bounded FIFO of events for one endpoint.

    ``pending_since`` is the monotonic time the oldest unread event has waited since; the
    engine uses it to drop endpoints that stopped reading (flow control).

    ``fan_out`` appends to a queue with room itself, without calling ``push`` (one call less
    per recipient of every message): a subclass that overrides ``push`` must have capacity 0,
    so that every event it is given comes to its ``push``.
    """

    __slots__ = (
        "_items",
        "_marks",
        "capacity",
        "close_reason",
        "closed",
        "dropped_total",
        "hard_close",
        "pending_since",
        "waker",
    )

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Event | _Dropped] = deque()
        self._marks = 0  # _Dropped markers among the items
        self.dropped_total = 0
        self.pending_since: float | None = None
        self.closed = False
        self.close_reason = ""
        self.hard_close = False
        self.waker: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def push(self, event: Event, mono: float) -> bool:
        """Queue ``event``; False if it was dropped because the queue is full or closed."""
        if self.closed:
            return False
        items = self._items
        if self.pending_since is None:
            self.pending_since = mono
        if len(items) >= self.capacity:
            tail = items[-1]
            if not isinstance(tail, _Dropped):
                tail = _Dropped(event.at)
                items.append(tail)
                self._marks += 1
            tail.count += 1
            self.dropped_total += 1
            return False
        items.append(event)
        if self.waker is not None:
            self.waker()
        return True

    def drain(self, limit: int, mono: float) -> list[Event]:
        """Take up to ``limit`` events, oldest first (a count of those dropped where they
        were). ``Engine.drain`` takes the usual case itself, with no clock: nothing dropped
        among at most ``limit`` events."""
        items = self._items
        out: list[Event] = []
        while items and len(out) < limit:
            item = items.popleft()
            if isinstance(item, _Dropped):
                self._marks -= 1
                out.append(EventsDropped(item.count, item.at))
            else:
                out.append(item)
        self.pending_since = mono if items else None
        return out

    def close(self, reason: str, *, hard: bool = False) -> None:
        """No more events; the reader ends after what is queued (at once if ``hard``)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self.hard_close = hard
        if self.waker is not None:
            self.waker()


def fan_out(queues: Iterable[EventQueue], own: EventQueue, event: Event, mono: float) -> int:
    """Queue ``event`` on each of ``queues`` but ``own`` (the sender's); how many dropped it
    (full; a closed queue does not count). ``EventQueue.push``'s usual case (room, open) is
    written out here: the routing path runs this for every message."""
    dropped = 0
    for queue in queues:
        if queue is not own:
            items = queue._items
            if len(items) < queue.capacity and not queue.closed:
                if queue.pending_since is None:
                    queue.pending_since = mono
                items.append(event)
                waker = queue.waker
                if waker is not None:
                    waker()
            elif not queue.push(event, mono) and not queue.closed:
                dropped += 1
    return dropped
