"""The routing core's baseline: the least work that means what routing a message means,
written plainly, with none of poolsim's machinery.

Routing one message is: look the sender and the conversation up, check the sender is a
member, take the conversation's next sequence number, build the event (the conversation, the
sender, the sequence, a message id, the body, its content type and the time), append it to
each other member's queue; each recipient then takes it from its queue. ``plain_loop`` does
exactly that over dicts, a frozen slotted event and deques, so ``routing-core``'s ratio says
how close poolsim's engine comes to the cost of the job itself. The bare dict-and-deque loop
(``bench.hotpath_core._bare_loop``: no look-up of the sender, no check, no event) stays beside
it as the physical floor.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pool.clock import SystemClock
from pool.registrar import Endpoint

NOW = SystemClock().now  # the engine's own wall clock, so both pay the same for the time


@dataclass(frozen=True, slots=True)
class PlainMessage:
    conversation_id: str
    sender: str
    sequence: int
    message_id: str
    body: str
    content_type: str
    at: float


class PlainConversation:
    __slots__ = ("id", "queues", "sequence")

    def __init__(self, conversation_id: str, members: Sequence[int]) -> None:
        self.id = conversation_id
        self.queues: dict[int, deque[PlainMessage]] = {uid: deque() for uid in members}
        self.sequence = 0


@dataclass(frozen=True, slots=True)
class PlainTable:
    """What the plain loop looks up: conversations by id, senders by endpoint id, and for each
    route the sender's endpoint id, the conversation id and the recipients' user ids."""

    conversations: dict[str, PlainConversation]
    senders: dict[str, tuple[int, str]]  # endpoint id -> (user id, uri)
    routes: list[tuple[str, str, tuple[int, ...]]]


Route = tuple[Endpoint, str, list[Endpoint]]  # sender, conversation id, recipients


def plain_table(routes: Sequence[Route]) -> PlainTable:
    conversations: dict[str, PlainConversation] = {}
    senders: dict[str, tuple[int, str]] = {}
    plain: list[tuple[str, str, tuple[int, ...]]] = []
    for sender, cid, recipients in routes:
        ids = tuple(r.user.id for r in recipients)
        conversations[cid] = PlainConversation(cid, (sender.user.id, *ids))
        senders[sender.id] = (sender.user.id, sender.uri)
        plain.append((sender.id, cid, ids))
    return PlainTable(conversations, senders, plain)


def plain_send(
    table: PlainTable, endpoint_id: str, conversation_id: str, body: str, content_type: str
) -> PlainMessage:
    user_id, uri = table.senders[endpoint_id]
    conv = table.conversations[conversation_id]
    queues = conv.queues
    if user_id not in queues:
        raise PermissionError(f"{uri} is not a member of {conversation_id}")
    seq = conv.sequence = conv.sequence + 1
    msg = PlainMessage(
        conversation_id,
        uri,
        seq,
        f"{conversation_id}:{seq}",
        body,
        content_type,
        NOW(),
    )
    for uid, queue in queues.items():
        if uid != user_id:
            queue.append(msg)
    return msg


def plain_op(table: PlainTable, body: str, content_type: str) -> Callable[[int], None]:
    """One route's message and its delivery, for per-call latency: ``op(i)`` routes on route i."""
    conversations, routes = table.conversations, table.routes

    def op(i: int) -> None:
        endpoint_id, cid, recipients = routes[i]
        plain_send(table, endpoint_id, cid, body, content_type)
        queues = conversations[cid].queues
        for uid in recipients:
            queues[uid].popleft()

    return op


def plain_loop(table: PlainTable, messages: int, body: str, content_type: str) -> float:
    """Seconds per message, over whole passes of the routes (at least ``messages``)."""
    conversations, routes = table.conversations, table.routes
    passes = max(1, -(-messages // len(routes)))
    send = plain_send
    start = time.perf_counter()
    for _ in range(passes):
        for endpoint_id, cid, recipients in routes:
            send(table, endpoint_id, cid, body, content_type)
            queues = conversations[cid].queues
            for uid in recipients:
                queues[uid].popleft()
    return (time.perf_counter() - start) / (passes * len(routes))
