"""Links to the other front ends: everything for one destination travels in batches.

Messages queue while a batch is in flight and leave as the next batch, one transport call
each. A message to an idle link leaves after the loop turn it was queued in; under load (the
link's last batch left less than ``LINGER`` ago) the next batch leaves ``LINGER`` after that
one, so what comes meanwhile joins it: both ends pay a frame, a write, a read and a wake-up per
batch, not per message. A link has one batch in flight, so messages arrive in the order they
were queued (message order per conversation holds). A batch of posts only leaves by the transport's
``post`` where it can take one now (the front ends' own connections, ``enterprise.peers``,
which keep batches in order by themselves): nothing waits for it, and the link is free for
the next batch at once. A *post* expects nothing back but may get a reply to
act on (``on_reply``); a *request* is a future of its reply. A batch that fails or takes longer
than ``LINK_TIMEOUT`` fails every request in it with ``Unavailable``.

``Links`` holds one front end's links: one per destination for everything, and one per
destination for replicas (writes and copies), whose handlers never wait, so a batch waiting
for replication cannot wait, through a cycle of front ends, for itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from enterprise.wire import Failure, Message, Reply, Transport
from pool.errors import ResourceExhausted, Unavailable

log = logging.getLogger("poolsim.enterprise")

LINK_BACKLOG = 100_000  # messages queued for one front end at most (then calls fail, events drop)
LINK_TIMEOUT = 10.0  # seconds a batch may take before the far front end counts as unreachable
#: seconds a batch may wait, under load, for more to join it (counted from the batch before)
LINGER = 0.001

#: what to do with a reply to a post: (destination, message, reply)
OnReply = Callable[[str, Message, Reply], None]


class Links:
    """The links of front end ``src`` (see the module docstring), and their counters."""

    def __init__(
        self,
        transport: Transport,
        src: str,
        on_reply: OnReply,
        on_batch: Callable[[int], None] = lambda items: None,
        *,
        linger: float = LINGER,
    ) -> None:
        self.transport = transport
        self.linger = linger
        self.src = src
        self.on_reply = on_reply
        self.main: dict[str, Link] = {}
        self.replicas: dict[str, Link] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.dropped_posts = 0
        self.batches = 0
        self.batch_items = 0
        #: told the size of every batch answered, after the counters (the metrics' histogram)
        self._on_batch = on_batch
        self.observe_batch: Callable[[int], None] = self._batch_answered

    def to(self, dst: str) -> Link:
        link = self.main.get(dst)
        if link is None:
            link = self.main[dst] = Link(self, dst)
        return link

    def replicas_to(self, dst: str) -> Link:
        """The link for replicas (writes and copies) to ``dst``, apart from everything else."""
        link = self.replicas.get(dst)
        if link is None:
            link = self.replicas[dst] = Link(self, dst)
        return link

    def _batch_answered(self, items: int) -> None:
        self.count_batch(items)
        self._on_batch(items)

    def count_batch(self, items: int) -> None:
        self.batches += 1
        self.batch_items += items


class Link:
    """Batches for one destination front end; one batch in flight (see the module docstring)."""

    def __init__(self, links: Links, dst: str) -> None:
        self.links = links
        self.dst = dst
        self.items: list[Message] = []
        self.futures: list[asyncio.Future[Any] | None] = []
        self.asks = 0  # requests among the items
        self.busy = False
        self.sent_at = float("-inf")  # the loop's time when the last batch left

    def post(self, message: Message) -> None:
        if len(self.items) >= LINK_BACKLOG:
            self.links.dropped_posts += 1
            return
        self.items.append(message)
        self.futures.append(None)
        self._kick()

    def request(self, message: Message) -> asyncio.Future[Any]:
        """The reply to ``message`` (a ``Failure`` comes back as its domain error)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if len(self.items) >= LINK_BACKLOG:
            future.set_exception(
                ResourceExhausted(
                    f"{len(self.items)} items are waiting for front end {self.dst}: try later"
                )
            )
            return future
        self.items.append(message)
        self.futures.append(future)
        self.asks += 1
        self._kick()
        return future

    def _kick(self) -> None:
        if not self.busy:
            self.busy = True
            loop = asyncio.get_running_loop()
            due = self.sent_at + self.links.linger
            if loop.time() < due:
                loop.call_at(due, self._start)  # under load: what comes until then joins
            else:
                loop.call_soon(self._start)  # after this loop turn: what else runs in it joins

    def _start(self) -> None:
        if self._posted():
            self.busy = False
            return
        tasks = self.links.tasks
        task = asyncio.get_running_loop().create_task(self._run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _posted(self) -> bool:
        """Sent the queued items if they are posts only and the transport takes them now."""
        links = self.links
        items = self.items
        if self.asks:
            return False
        try:
            if not links.transport.post(self.dst, links.src, items, links.on_reply):
                return False
        except Exception:  # a defect: the exchange meets it again and fails as it should
            log.exception("posting a batch to %s", self.dst)
            return False
        self.items, self.futures = [], []
        self.sent_at = asyncio.get_running_loop().time()
        links.observe_batch(len(items))
        return True

    async def _run(self) -> None:
        links = self.links
        try:
            while self.items:
                if self._posted():
                    continue
                items, futures = self.items, self.futures
                self.items, self.futures, self.asks = [], [], 0
                self.sent_at = asyncio.get_running_loop().time()
                try:
                    async with asyncio.timeout(LINK_TIMEOUT):  # no task of its own per batch
                        replies = await links.transport.exchange(self.dst, links.src, items)
                except Exception as exc:  # the far front end died or hangs
                    error = Unavailable(
                        f"front end {self.dst} did not answer ({type(exc).__name__}): it may "
                        "have failed; try again"
                    )
                    for future in futures:
                        if future is not None and not future.done():
                            future.set_exception(error)
                    continue
                links.observe_batch(len(items))
                for item, future, reply in zip(items, futures, replies, strict=True):
                    if future is None:
                        if reply is not None:
                            links.on_reply(self.dst, item, reply)
                    elif not future.done():
                        if isinstance(reply, Failure):
                            future.set_exception(reply.error())
                        else:
                            future.set_result(reply)
        finally:
            self.busy = False
