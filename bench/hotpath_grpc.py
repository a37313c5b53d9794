"""End-to-end benchmarks over gRPC on loopback: poolsim against a bare grpc.aio server.

Each server runs in a process of its own (``bench.hotpath_servers``), started, pinned and
stopped the same way for both. The client runs in the bench process on one event loop and drives
both with the same code through two small adapters (``Side``): poolsim through the generated
stubs, the bare server through ``channel.unary_unary`` / ``unary_stream``. The bare server
forwards the bytes it is sent, so its sender sends the event its readers get, made by poolsim's
own converter (``bare_event``): the readers of both parse the same ``pb.Event`` with the same
code (``_keys``), and what differs between the sides is the server.

With two CPUs or more the client runs on the first and the servers on the last, so neither
takes the other's processor (and other work on the machine disturbs the figures less).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.hotpath_common import Options, Result, Row, latency_summary, make_row, median
from bench.hotpath_servers import DOMAIN, PASSWORD, READY, ServerProcess, start_server
from pool import events
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api import convert
from pool.client import PoolClient, Session
from pool.clock import SystemClock
from pool.privacy import AccessLevel, PresenceView

E2E_TARGET = 0.9  # of the bare server, open and closed loop (issue #14)
FANOUT_TARGET = 0.9  # presence fan-out to 80 watchers (issue #14)
BODY_WIDTH = 64
STEP_TIMEOUT = 30.0  # seconds a round or a publication may take before the run fails
BUSY, AVAILABLE = 6500, 3500
BARE_CONV = "c-g0-" + "0" * 16  # as long as a poolsim conversation id

Md = tuple[tuple[str, str], ...]


def _uri(i: int) -> str:
    return f"sip:user{i}@{DOMAIN}"


# --- the client side: one adapter per server, the same driving code for both ---


@dataclass
class Side:
    """How to drive one server: send one item, and read one stream as decoded keys."""

    name: str
    server: ServerProcess
    send: Callable[[str], Awaitable[Any]]  # one call; the key is the payload's identity
    #: what arrives: a key, None (the stream is ready), or a count of events the server dropped
    open_stream: Callable[[], AsyncIterator[str | int | None]]
    close: Callable[[], Awaitable[None]]


async def _sign_in(client: PoolClient, i: int) -> Session:
    return await client.sign_in(_uri(i), PASSWORD, "bench")


def _md(session: Session) -> Md:
    return (("authorization", f"Bearer {session.token}"),)


async def poolsim_side(server: ServerProcess, watchers: int) -> tuple[Side, list[Side]]:
    """Sender user0, ``watchers`` readers user1..; a conversation (one reader) or presence
    subscriptions. Returns the side to send with and one side per reader."""
    client = PoolClient(server.address)
    stub = pb_grpc.FrontEndStub(client.channel())
    sender = await _sign_in(client, 0)
    readers = [await _sign_in(client, i + 1) for i in range(watchers)]
    conv_id = ""
    if watchers == 1:
        conv = await sender.create_conversation([readers[0].user_uri])
        await readers[0].accept(conv.conversation_id)
        conv_id = conv.conversation_id
    else:
        for r in readers:
            await r.subscribe([sender.user_uri])
    smd = _md(sender)

    async def send(key: str) -> Any:
        if conv_id:
            return await stub.SendMessage(
                pb.SendMessageRequest(conversation_id=conv_id, body=key, content_type="text/plain"),
                metadata=smd,
            )
        return await stub.PublishPresence(
            pb.PublishPresenceRequest(source=pb.PRESENCE_SOURCE_USER, availability=int(key)),
            metadata=smd,
        )

    def stream_of(reader: Session) -> Callable[[], AsyncIterator[str | int | None]]:
        def events() -> AsyncIterator[str | int | None]:
            return _keys(stub.Events(pb.EventsRequest(), metadata=_md(reader)))

        return events

    async def close() -> None:
        await client.close()

    sides = [Side("poolsim", server, send, stream_of(r), close) for r in readers]
    return sides[0], sides


async def _keys(call: Any) -> AsyncIterator[str | int | None]:
    """What a reader of either server makes of its stream of ``pb.Event``: the key of a message
    or a presence change, a count of dropped events, or None for an event of no kind (the bare
    stream's first item: its queue is registered)."""
    try:
        async for ev in call:
            kind = ev.WhichOneof("kind")
            if kind == "message":
                yield ev.message.body
            elif kind == "presence":
                yield str(ev.presence.presence.availability)
            elif kind == "dropped":
                yield ev.dropped.count
            elif kind is None:
                yield None
    finally:
        call.cancel()


def bare_event(fanout: bool) -> pb.Event:
    """The event a bare server's watcher gets, as poolsim's converter writes the event a poolsim
    reader gets (a colleague's presence, or a message of a conversation): both sides' readers
    then parse the same message with the same code, and the rows compare servers."""
    at = SystemClock().now()
    if fanout:
        view = PresenceView(_uri(0), BUSY, "", "", AccessLevel.COLLEAGUES, endpoints=1)
        return convert.event(events.PresenceChanged(view, at))
    seq = 10_000  # a poolsim message's sequence is its number in the conversation
    message_id = f"{BARE_CONV}:{seq}"  # as poolsim's
    return convert.event(
        events.MessageReceived(BARE_CONV, _uri(0), seq, message_id, "", "text/plain", at)
    )


async def bare_side(server: ServerProcess, watchers: int) -> tuple[Side, list[Side]]:
    """The bare server forwards what it is sent: the sender sends the event its readers get."""
    channel = grpc.aio.insecure_channel(server.address)
    send_call = channel.unary_unary("/bench.Bare/Send", None, None)
    watch_call = channel.unary_stream("/bench.Bare/Watch", None, pb.Event.FromString)
    md: Md = (("authorization", "Bearer " + secrets.token_urlsafe(24)),)
    fanout = watchers > 1
    ev = bare_event(fanout)  # each send sets its key and serializes before it awaits

    async def send(key: str) -> Any:
        if fanout:
            ev.presence.presence.availability = int(key)
        else:
            ev.message.body = key
        return await send_call(ev.SerializeToString(), metadata=md)

    def events() -> AsyncIterator[str | int | None]:
        return _keys(watch_call(READY, metadata=md))

    async def close() -> None:
        await channel.close(None)

    sides = [Side("bare", server, send, events, close) for _ in range(watchers)]
    return sides[0], sides


@dataclass
class Tracker:
    """What arrived: per-key latency (e2e) or the arrivals of one publication (fanout)."""

    count: int = 0  # arrivals that complete the current step
    value: str | None = None  # fanout: the publication's key; None: e2e (keys in sent_at)
    #: e2e: key -> (when it was sent, resolved on arrival when the sender waits for it)
    sent_at: dict[str, tuple[float, asyncio.Future[None] | None]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    received: int = 0
    dropped: int = 0  # events the server dropped (its queue for the reader was full)
    last: float = 0.0
    published: int = 0  # fanout: publications so far (their values alternate)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    def arm(self, count: int, value: str | None = None) -> None:
        self.count, self.value, self.received, self.dropped = count, value, 0, 0
        self.sent_at.clear()
        self.done.clear()

    def arrived(self, key: str, now: float) -> None:
        if self.value is None:
            sent = self.sent_at.pop(key, None)
            if sent is None:
                return
            self.latencies.append(now - sent[0])
            if sent[1] is not None:
                sent[1].set_result(None)
        elif key != self.value:
            return
        self.received += 1
        self.last = now
        self._check()

    def lost(self, count: int, now: float) -> None:
        self.dropped += count
        self.last = now
        self._check()

    def _check(self) -> None:
        if self.received + self.dropped >= self.count:
            self.done.set()

    async def wait(self) -> None:
        """Until the step is complete; fails if a reader failed or it takes too long."""
        waiter = asyncio.ensure_future(self.done.wait())
        finished, _ = await asyncio.wait(
            [waiter, *self.readers], timeout=STEP_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter in finished:
            return
        waiter.cancel()
        for task in finished:
            raise RuntimeError("an event stream ended early") from task.exception()
        raise TimeoutError(f"{self.received} of {self.count} arrived in {STEP_TIMEOUT:.0f} s")


async def _read(side: Side, tracker: Tracker, ready: asyncio.Event) -> None:
    pc = time.perf_counter
    async for item in side.open_stream():
        if item is None:
            ready.set()
        elif isinstance(item, int):
            tracker.lost(item, pc())
        else:
            tracker.arrived(item, pc())


async def _start_readers(readers: list[Side], tracker: Tracker) -> None:
    flags = [asyncio.Event() for _ in readers]
    tracker.readers = [
        asyncio.create_task(_read(r, tracker, f)) for r, f in zip(readers, flags, strict=True)
    ]
    if readers[0].name == "bare":  # its queues exist once the first item arrives
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in flags)), STEP_TIMEOUT)


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t


async def track_sends(
    send: Callable[[str], Awaitable[Any]],
    tracker: Tracker,
    n: int,
    concurrency: int,
    closed: bool,
    tag: str,
) -> float:
    """``concurrency`` workers send ``n`` tagged messages in all; returns when ``tracker`` has
    seen them all (or lost them), with the time the sending started.

    Open: a worker sends its next message as soon as the call returns, so up to K calls are in
    flight and the reader may fall behind. Closed: a worker also waits for its message to
    arrive, so at most K messages are in flight end to end.
    """
    tracker.arm(n)
    tracker.latencies = []
    keys = iter(range(n))
    pc = time.perf_counter
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        for i in keys:
            key = f"{tag}{i:09d}".ljust(BODY_WIDTH, ".")
            arrived = loop.create_future() if closed else None
            tracker.sent_at[key] = (pc(), arrived)
            await send(key)
            if arrived is not None:
                await arrived

    start = pc()
    workers = asyncio.gather(*(worker() for _ in range(concurrency)))
    try:
        await tracker.wait()
    finally:
        if not workers.done():
            workers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await workers
    return start


async def _e2e_round(
    sender: Side, tracker: Tracker, n: int, concurrency: int, closed: bool, tag: str
) -> dict[str, float]:
    """One round of ``track_sends`` through ``sender``, with the CPU it cost."""
    cpu0, client0 = sender.server.cpu(), time.process_time()
    start = await track_sends(sender.send, tracker, n, concurrency, closed, tag)
    elapsed = tracker.last - start
    return {
        "throughput": tracker.received / elapsed,
        "server_cpu_us_per_msg": (sender.server.cpu() - cpu0) / n * 1e6,
        "client_cpu_us_per_msg": (time.process_time() - client0) / n * 1e6,
        "dropped": tracker.dropped,
    }


async def _fanout_round(sender: Side, tracker: Tracker, n: int, watchers: int) -> dict[str, float]:
    """One publication in flight at a time, each until every watcher has it."""
    pc = time.perf_counter
    latencies: list[float] = []
    cpu0, client0, start = sender.server.cpu(), time.process_time(), pc()
    for _ in range(n):
        value = str(BUSY if tracker.published % 2 == 0 else AVAILABLE)  # always a change
        tracker.published += 1
        tracker.arm(watchers, value)
        t0 = pc()
        await sender.send(value)
        await tracker.wait()
        latencies.append(tracker.last - t0)
    elapsed = pc() - start
    tracker.latencies = latencies
    return {
        "throughput": n / elapsed,
        "server_cpu_us_per_pub": (sender.server.cpu() - cpu0) / n * 1e6,
        "client_cpu_us_per_pub": (time.process_time() - client0) / n * 1e6,
    }


Builder = Callable[[ServerProcess, int], Awaitable[tuple[Side, list[Side]]]]


@contextlib.contextmanager
def _pinned(cpus: list[int], enabled: bool) -> Iterator[None]:
    """Run this process on ``cpus`` for a while (then as before)."""
    before = os.sched_getaffinity(0)
    if enabled:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


async def _round(mode: str, sender: Side, tracker: Tracker, opts: Options, warm: bool) -> Any:
    if mode == "fanout":
        n = opts.fanout_warmup if warm else opts.fanout_publications
        return await _fanout_round(sender, tracker, n, opts.fanout_watchers)
    n = opts.e2e_warmup if warm else opts.e2e_messages
    tag = f"{mode}-{tracker.published}-"
    tracker.published += 1
    return await _e2e_round(sender, tracker, n, opts.e2e_concurrency, mode == "closed", tag)


async def _compare(opts: Options, modes: list[str]) -> dict[str, Any]:
    """Start both servers, drive them alternately in each mode; figures per mode and side.

    With two CPUs or more, the client runs on the first and the servers on the last, so
    neither steals the other's processor (and other work on the machine disturbs less).
    """
    watchers = opts.fanout_watchers if modes == ["fanout"] else 1
    rounds = opts.fanout_rounds if watchers > 1 else opts.e2e_rounds
    out: dict[str, Any] = {m: {"poolsim": {}, "bare": {}} for m in modes}
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    out["pinning"] = (
        f"client on CPU {cpus[0]}, servers on CPU {cpus[-1]}" if pinned else "none (one CPU)"
    )
    builders: list[tuple[str, Builder]] = [("bare", bare_side), ("poolsim", poolsim_side)]
    servers: dict[str, ServerProcess] = {}
    sides: dict[str, tuple[Side, list[Side], Tracker]] = {}
    with tempfile.TemporaryDirectory(prefix="poolsim-bench-") as tmp, _pinned(cpus[:1], pinned):
        try:
            for kind, build in builders:
                d = Path(tmp) / kind
                d.mkdir()
                servers[kind] = start_server(kind, watchers + 1, opts.e2e_store, d)
                if pinned:
                    os.sched_setaffinity(servers[kind].proc.pid, cpus[-1:])
                sender, readers = await build(servers[kind], watchers)
                tracker = Tracker()
                sides[kind] = (sender, readers, tracker)
                await _start_readers(readers, tracker)
            for mode in modes:
                for r in range(-1, rounds):  # round -1 warms both up
                    for kind, (sender, _, tracker) in sides.items():  # alternately
                        figures = await _round(mode, sender, tracker, opts, warm=r < 0)
                        if r >= 0:
                            got = out[mode][kind]
                            got.setdefault("rounds", []).append(figures)
                            got.setdefault("latencies", []).extend(tracker.latencies)
        finally:
            for _, readers, tracker in sides.values():
                await _stop(tracker.readers)
                await readers[0].close()
            for server in servers.values():
                server.stop()
    return out


def _row(name: str, unit: str, data: dict[str, Any], target: float, source: str) -> Row:
    figures: dict[str, Any] = {}
    for kind in ("poolsim", "bare"):
        rounds = data[kind]["rounds"]
        figures[kind] = median([r["throughput"] for r in rounds])
        for key in rounds[0]:
            if key != "throughput":
                figures[f"{kind}_{key}"] = median([r[key] for r in rounds])
        figures[f"{kind}_throughput_by_round"] = [r["throughput"] for r in rounds]
    latency = {
        **latency_summary("poolsim", data["poolsim"]["latencies"]),
        **latency_summary("baseline", data["bare"]["latencies"]),
    }
    details = {k: v for k, v in figures.items() if k not in ("poolsim", "bare")}
    return make_row(
        name,
        unit,
        figures["poolsim"],
        figures["bare"],
        target,
        target_source=source,
        latency_us=latency,
        details=details,
    )


def run_grpc_e2e(opts: Options) -> Result:
    result = Result("grpc-e2e")
    data = asyncio.run(_compare(opts, ["open", "closed"]))
    result.rows.append(_row("grpc-e2e", "msg/s", data["open"], E2E_TARGET, "given"))
    result.rows.append(_row("grpc-e2e/closed-loop", "msg/s", data["closed"], E2E_TARGET, "given"))
    result.params = {
        "messages_per_round": opts.e2e_messages,
        "warmup": opts.e2e_warmup,
        "concurrency": opts.e2e_concurrency,
        "rounds": opts.e2e_rounds,
        "store": opts.e2e_store,
        "body_chars": BODY_WIDTH,
        "cpu_pinning": data["pinning"],
    }
    result.notes.append(
        "throughput: messages received at the recipient per second (median of rounds); "
        "latency: SendMessage call start to the event's arrival, all rounds pooled"
    )
    result.notes.append(
        f"grpc-e2e: up to {opts.e2e_concurrency} SendMessage calls in flight, as specified; "
        "the reader may fall behind, so latency includes the backlog; grpc-e2e/closed-loop: "
        f"each of the {opts.e2e_concurrency} senders also waits for its message to arrive"
    )
    return result


def run_fanout(opts: Options) -> Result:
    result = Result("fanout")
    data = asyncio.run(_compare(opts, ["fanout"]))
    result.rows.append(_row("fanout", "pub/s", data["fanout"], FANOUT_TARGET, "given"))
    result.params = {
        "watchers": opts.fanout_watchers,
        "publications_per_round": opts.fanout_publications,
        "rounds": opts.fanout_rounds,
        "store": opts.e2e_store,
        "cpu_pinning": data["pinning"],
    }
    result.notes.append(
        "one publication in flight at a time; latency: PublishPresence call start to the "
        f"{opts.fanout_watchers}th watcher's event; baseline: the bare server's Send pushing to "
        f"{opts.fanout_watchers} Watch queues"
    )
    return result
