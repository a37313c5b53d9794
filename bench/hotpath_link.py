"""Batched cross-node calls against a bare Ray actor call per message (the ``enterprise`` bench).

Two Ray actors (``num_cpus=0``, on this Ray node) on the Ray instance of the run: a sender and a
peer. The sender moves ``n`` small messages (``Deliver(endpoint id, a 64-character body)``)
to the peer in two ways, with the same ``concurrency`` workers on its event loop, each sending
its next message once the previous one is answered (closed loop):

* **batched** (poolsim): each message is ``Link.request`` of the real ``enterprise.link.Link``
  over the real ``enterprise.actors.RayTransport``; messages queued while a batch is in flight
  leave together as the next batch, in one ``peer.exchange.remote(src, items)`` call. The
  sending actor holds the front end's ``Links`` (batch counters, no replies to act on).
* **bare**: each message is its own ``await peer.deliver.remote(item)``.

The peer does the same for both: it counts what arrives and answers ``None`` per message.
Latency is per message, from the call (or ``request``) to its answer at the sender; throughput
is ``n`` over the time until the last answer. No target is given for this comparison.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, cast

from bench.hotpath_common import Options, Row, latency_summary, make_comparison, median
from enterprise.actors import Handle, RayTransport
from enterprise.link import Links
from enterprise.wire import Deliver, Message, Packed, Reply, pack

PEER = "peer"
SENDER = "sender"
BODY_WIDTH = 64
ROUND_TIMEOUT = 120.0  # seconds one round may take before the run fails


def _item(tag: str, i: int) -> Message:
    # a bare body stands in for the event: the peer never reads it, and the bench measures
    # the link, not an event's pickling
    return Deliver("endpoint-1", cast(Any, f"{tag}{i:09d}".ljust(BODY_WIDTH, ".")))


class _Counted(Links):
    """The sender's links, also keeping the largest batch."""

    def __init__(self, transport: RayTransport) -> None:
        super().__init__(transport, SENDER, self.replied)
        self.max_batch = 0
        self.observe_batch = self.counted

    def counted(self, items: int) -> None:
        self.count_batch(items)
        self.max_batch = max(self.max_batch, items)

    def replied(self, dst: str, item: Message, reply: Reply) -> None:
        """Only posts come back here; the bench sends requests."""


class LinkPeer:
    """The receiving actor: the same minimal work per message in both modes."""

    def __init__(self) -> None:
        self.received = 0

    async def exchange(self, src: str, items: list[Packed]) -> list[Reply]:
        self.received += len(items)
        return [None] * len(items)

    async def deliver(self, item: Packed) -> None:
        self.received += 1

    async def count(self) -> int:
        return self.received


class LinkSender:
    """The sending actor: a real ``Link`` to the peer, and the bare calls."""

    def __init__(self, peer: Handle) -> None:
        self.peer = peer
        transport = RayTransport(None)
        transport.handles = {PEER: peer}
        self.node = _Counted(transport)
        self.link = self.node.to(PEER)

    async def run(self, mode: str, n: int, concurrency: int, tag: str) -> dict[str, Any]:
        """Send ``n`` messages in ``mode`` ("batched" or "bare"); times and batch counts."""
        node, link, peer = self.node, self.link, self.peer
        batches0, items0 = node.batches, node.batch_items
        node.max_batch = 0
        keys = iter(range(n))
        latencies: list[float] = []
        pc = time.perf_counter

        async def worker() -> None:
            for i in keys:
                item = _item(tag, i)
                t0 = pc()
                if mode == "batched":
                    await link.request(item)
                else:
                    await peer.deliver.remote(pack(item))  # as RayTransport sends it
                latencies.append(pc() - t0)

        start = pc()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = pc() - start
        return {
            "seconds": elapsed,
            "throughput": n / elapsed,
            "latencies": latencies,
            "ray_calls": node.batches - batches0 if mode == "batched" else n,
            "items": node.batch_items - items0 if mode == "batched" else n,
            "max_batch_items": node.max_batch if mode == "batched" else 1,
        }


MODES = ("batched", "bare")


async def measure_link(n: int, warmup: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Start the two actors, run a warm-up round of each mode, then ``rounds`` rounds of each,
    alternating which goes first; per mode the rounds' figures and pooled latencies."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    options: dict[str, Any] = {
        "num_cpus": 0,
        "max_concurrency": 100_000,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(here, soft=True),
    }
    peer_cls: Any = ray.remote(LinkPeer)
    sender_cls: Any = ray.remote(LinkSender)
    peer = peer_cls.options(**options).remote()
    sender = sender_cls.options(**options).remote(peer)
    out: dict[str, Any] = {m: {"rounds": [], "latencies": []} for m in MODES}
    try:
        for r in range(-1, rounds):  # round -1 warms both up
            order = MODES if r % 2 else MODES[::-1]
            for mode in order:
                count = warmup if r < 0 else n
                got: dict[str, Any] = await asyncio.wait_for(
                    sender.run.remote(mode, count, concurrency, f"{mode}{r}-"), ROUND_TIMEOUT
                )
                if r < 0:
                    continue
                out[mode]["latencies"].extend(got.pop("latencies"))
                out[mode]["rounds"].append(got)
        out["peer_received"] = await peer.count.remote()
    finally:
        ray.kill(sender)
        ray.kill(peer)
    return out


def batched_calls_row(opts: Options, link: dict[str, Any]) -> Row:
    """Batched calls through ``Link`` against a bare Ray call per message: a figure row."""
    batched, bare = link["batched"], link["bare"]
    calls = sum(r["ray_calls"] for r in batched["rounds"])
    items = sum(r["items"] for r in batched["rounds"])
    return make_comparison(
        "enterprise/batched-calls",
        "msg/s",
        median([r["throughput"] for r in batched["rounds"]]),
        median([r["throughput"] for r in bare["rounds"]]),
        latency_us={
            **latency_summary("poolsim", batched["latencies"]),
            **latency_summary("baseline", bare["latencies"]),
        },
        details={
            "batched_throughput_by_round": [r["throughput"] for r in batched["rounds"]],
            "bare_throughput_by_round": [r["throughput"] for r in bare["rounds"]],
            "messages_per_round": opts.ent_link_messages,
            "in_flight": opts.ent_concurrency,
            "batched_ray_calls": calls,
            "batched_items": items,
            "mean_batch_items": items / calls if calls else math.nan,
            "max_batch_items": max(r["max_batch_items"] for r in batched["rounds"]),
            "bare_ray_calls": sum(r["ray_calls"] for r in bare["rounds"]),
            "peer_received": link["peer_received"],
        },
    )
