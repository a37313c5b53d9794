"""`poolsim bench --only session`: processor per operation over Session streams, over unary
calls, and on a bare ``grpc.aio`` bidirectional echo of the same shape.

The workload (issue #15's, as measured against ejabberd): 50 sender/receiver pairs send
20,000 one-to-one messages, at most 8 unanswered (sent, not yet received) per pair; then 99
users each change presence 20 times, each watched by 10 others (19,800 notifications). Every
message and notification must arrive. Processor time is read from the processes' own counters
(``/proc/<pid>/stat`` for the server, ``time.process_time`` for the client): per routed
message, per presence notification, and the client's per message.

Sides, each with a fresh server process, rounds alternating:

* ``session``: ``PoolClient(transport="session")``, one FrontEnd.Session stream per endpoint;
  messages sent with ``Session.start`` (a future per call, no task), presence published with
  the typed ``publish_presence``, events read with ``Session.events``;
* ``unary``: ``PoolClient(transport="unary")``, one RPC per call (``start`` makes it a task)
  and an Events stream;
* ``bare``: ``bench.bare_session`` (parse each request, answer it, forward one event per
  recipient), driven through the same client stream class as ``session`` (futures per call);
* ``ejabberd``, when the machine has it (``bench.ejabberd``): Debian's ejabberd 23.01 and raw
  XMPP clients (a chat message per send, no answer; presence with a status), the watchers
  subscribed through the roster.

The goals (issue #15): the server's processor per routed message and per presence notification
at most twice ejabberd's, measured in the same run; and a client that costs no more per message
than the server. The client's figure against the raw XMPP client's is printed too, as a figure.
Without ejabberd the baseline is the issue's measurement on the 2-core machine (62.5 us per
message, 46 us per notification, 29 us of client per message), and the rows say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.ejabberd import RESOURCE, EjabberdProcess, XmppClient, ejabberdctl, start_ejabberd
from bench.hotpath_common import Options, Result, make_comparison, make_row, median
from bench.hotpath_grpc import _pinned
from bench.hotpath_servers import DOMAIN, PASSWORD, ServerProcess, start_server
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.client import PoolClient, Session
from pool.client.stream import CallStream

PAIRS = 50
MESSAGES = 20_000
WINDOW = 8  # unanswered messages per pair at most
PRESENCE_USERS = 99
CHANGES = 20
WATCHERS = 10
STEP_TIMEOUT = 120.0
#: ejabberd's figures on the same machine and workload (the issue), microseconds
REFERENCE_US = {"message_server": 62.5, "notification_server": 46.0, "message_client": 29.0}
GOAL = 2.0  # at most twice the reference
SIDES = ("session", "unary", "bare")
EJABBERD = "ejabberd"  # a side too, when the machine has ejabberd (bench.ejabberd)
BARE_METHOD = "/bench.Bare/Session"


def _uri(i: int) -> str:
    return f"sip:user{i}@{DOMAIN}"


def _watchers_of(i: int) -> list[int]:
    return [(i + k) % PRESENCE_USERS for k in range(1, WATCHERS + 1)]


class _Window:
    """At most ``size`` messages of one pair unanswered: a counter and one waiter (the pair's
    sender), cheaper than ``asyncio.Semaphore`` whose every acquire scans its waiters: this is
    the harness's own cost, counted in the client's figure, so kept to the least."""

    __slots__ = ("_waiter", "free")

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiter: asyncio.Future[None] | None = None

    async def acquire(self) -> None:
        while not self.free:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        self.free -= 1

    def release(self) -> None:
        self.free += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@dataclass
class _Counts:
    """What the readers saw: messages per pair, presence notifications of this round."""

    windows: list[_Window]
    messages: int = 0
    notifications: int = 0
    tag: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expect: int = 0

    def message(self, pair: int) -> None:
        self.messages += 1
        self.windows[pair].release()
        if self.messages >= self.expect:
            self.done.set()

    def presence(self, note: str) -> None:
        if self.tag and note.startswith(self.tag):  # no tag yet: the bare side's hello
            self.notifications += 1
            if self.notifications >= self.expect:
                self.done.set()


@dataclass
class _Side:
    send: Callable[[int, str], Awaitable[Any]]  # pair, body
    publish: Callable[[int, int, str], Awaitable[Any]]  # user, availability, note
    close: Callable[[], Awaitable[None]]
    readers: list[asyncio.Task[None]]


def _on_event(counts: _Counts, pair_of: dict[str, int], event: pb.Event) -> None:
    kind = event.WhichOneof("kind")
    if kind == "message":
        counts.message(pair_of[event.message.conversation_id])
    elif kind == "presence":
        counts.presence(event.presence.presence.note)


async def _poolsim_side(address: str, transport: str, counts: _Counts) -> _Side:
    client = PoolClient(address, transport=transport)
    users = max(2 * PAIRS, PRESENCE_USERS)
    sessions: list[Session] = [
        await client.sign_in(_uri(i), PASSWORD, "bench") for i in range(users)
    ]
    pair_of: dict[str, int] = {}
    convs: list[str] = []
    for k in range(PAIRS):
        conv = await sessions[2 * k].create_conversation([_uri(2 * k + 1)])
        await sessions[2 * k + 1].accept(conv.conversation_id)
        pair_of[conv.conversation_id] = k
        convs.append(conv.conversation_id)
    for w in range(PRESENCE_USERS):
        targets = [t for t in range(PRESENCE_USERS) if w in _watchers_of(t)]
        await sessions[w].subscribe([_uri(t) for t in targets])

    async def read(s: Session) -> None:
        with contextlib.suppress(Exception):
            async for event in s.events(reconnect=False):
                _on_event(counts, pair_of, event)

    readers = [asyncio.get_running_loop().create_task(read(s)) for s in sessions]

    def send(pair: int, body: str) -> Awaitable[Any]:  # a future per call, as bare's
        request = pb.SendMessageRequest(
            conversation_id=convs[pair], body=body, content_type="text/plain"
        )
        return sessions[2 * pair].start("SendMessage", request)

    async def publish(user: int, availability: int, note: str) -> Any:
        return await sessions[user].publish_presence(availability, note=note)

    return _Side(send, publish, client.close, readers)


async def _bare_side(address: str, counts: _Counts) -> _Side:
    channel = grpc.aio.insecure_channel(address)
    users = max(2 * PAIRS, PRESENCE_USERS)
    pair_of = {f"c-{k}": k for k in range(PAIRS)}
    streams: list[CallStream] = []
    for i in range(users):
        partner = str(i + 1) if i < 2 * PAIRS and i % 2 == 0 else ""
        watchers = ",".join(str(u) for u in _watchers_of(i)) if i < PRESENCE_USERS else ""
        md = (("x-user", str(i)), ("x-partner", partner), ("x-watchers", watchers))
        streams.append(CallStream(channel, md, BARE_METHOD))

    async def read(stream: CallStream) -> None:
        with contextlib.suppress(Exception):
            async for event in stream.next_events():
                _on_event(counts, pair_of, event)

    readers = [asyncio.get_running_loop().create_task(read(s)) for s in streams]
    # every stream registered with the server before anything is sent (the server drops an
    # event for a stream it does not know yet): it answers a call only once its stream is
    # registered, so one answered call per stream tells (a fixed pause did not, under load)
    hello = pb.PublishPresenceRequest(availability=0, note="hello")
    await asyncio.wait_for(
        asyncio.gather(*(s.call("PublishPresence", hello) for s in streams)), STEP_TIMEOUT
    )

    def send(pair: int, body: str) -> Awaitable[Any]:
        request = pb.SendMessageRequest(conversation_id=f"c-{pair}", body=body)
        return streams[2 * pair].call("SendMessage", request)

    def publish(user: int, availability: int, note: str) -> Awaitable[Any]:
        request = pb.PublishPresenceRequest(availability=availability, note=note)
        return streams[user].call("PublishPresence", request)

    async def close() -> None:
        for s in streams:
            s.close()
        await channel.close(None)

    return _Side(send, publish, close, readers)


async def _ejabberd_side(server: EjabberdProcess, counts: _Counts) -> _Side:
    """Raw XMPP clients of the same workload; every watcher subscribed to its 10 users."""
    users = max(2 * PAIRS, PRESENCE_USERS)
    pair_of = {f"user{2 * k}@{DOMAIN}/{RESOURCE}": k for k in range(PAIRS)}
    # each watcher: the users whose presence it has not seen yet
    unseen = {
        w: {f"user{t}@{DOMAIN}" for t in range(PRESENCE_USERS) if w in _watchers_of(t)}
        for w in range(users)
    }
    waiting_watchers = sum(1 for targets in unseen.values() if targets)
    subscribed = asyncio.Event()

    def on_message(attrs: dict[str, str], texts: dict[str, str]) -> None:
        counts.message(pair_of[attrs["from"]])

    def presence_of(w: int) -> Callable[[dict[str, str], dict[str, str]], None]:
        own = f"user{w}@{DOMAIN}/"

        def on_presence(attrs: dict[str, str], texts: dict[str, str]) -> None:
            nonlocal waiting_watchers
            sender = attrs.get("from", "")
            if sender.startswith(own) or "type" in attrs:  # its own, or a subscription's
                return
            waiting = unseen[w]
            if waiting:
                waiting.discard(sender.partition("/")[0])
                if not waiting:
                    waiting_watchers -= 1
                    if not waiting_watchers:
                        subscribed.set()
            counts.presence(texts.get("status", ""))

        return on_presence

    clients = [
        XmppClient(DOMAIN, f"user{i}", PASSWORD, on_message, presence_of(i)) for i in range(users)
    ]
    await asyncio.wait_for(
        asyncio.gather(*(c.start(server.address) for c in clients)), STEP_TIMEOUT
    )
    for t in range(PRESENCE_USERS):
        for w in _watchers_of(t):
            clients[w].subscribe(f"user{t}@{DOMAIN}")
    await asyncio.wait_for(subscribed.wait(), STEP_TIMEOUT)
    sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sent.set_result(None)  # XMPP answers nothing: a message is done once written

    def send(pair: int, body: str) -> Awaitable[Any]:
        clients[2 * pair].message(f"user{2 * pair + 1}@{DOMAIN}", body)
        return sent

    def publish(user: int, availability: int, note: str) -> Awaitable[Any]:
        clients[user].presence("dnd" if availability == 6500 else "", note)
        return sent

    async def close() -> None:
        for c in clients:
            c.close()

    return _Side(send, publish, close, [])


async def _messages(side: _Side, counts: _Counts, total: int) -> None:
    counts.messages, counts.expect = 0, total
    counts.done.clear()
    per_pair = total // PAIRS

    async def pair(k: int) -> None:
        window = counts.windows[k]
        sends: deque[asyncio.Future[Any]] = deque()
        for j in range(per_pair):
            await window.acquire()
            # every send's answer is checked (its error raised), the answered ones as the pair
            # goes: a gather of them all at the end costs a loop callback per message
            while sends and sends[0].done():
                sends.popleft().result()
            sends.append(asyncio.ensure_future(side.send(k, f"m{j}")))
        await asyncio.gather(*sends)

    await asyncio.wait_for(asyncio.gather(*(pair(k) for k in range(PAIRS))), STEP_TIMEOUT)
    await asyncio.wait_for(counts.done.wait(), STEP_TIMEOUT)


async def _presence(side: _Side, counts: _Counts, changes: int, tag: str) -> None:
    counts.notifications, counts.tag = 0, tag
    counts.expect = PRESENCE_USERS * changes * WATCHERS
    counts.done.clear()

    async def user(i: int) -> None:
        for j in range(changes):
            await side.publish(i, 6500 if j % 2 == 0 else 3500, f"{tag}{j}")

    await asyncio.wait_for(asyncio.gather(*(user(i) for i in range(PRESENCE_USERS))), STEP_TIMEOUT)
    await asyncio.wait_for(counts.done.wait(), STEP_TIMEOUT)


async def _one_round(
    kind: str, tmp: Path, messages: int, changes: int, pin: list[int]
) -> dict[str, float]:
    counts = _Counts([_Window(WINDOW) for _ in range(PAIRS)])
    server: ServerProcess | EjabberdProcess
    if kind == EJABBERD:
        server = await asyncio.to_thread(start_ejabberd, DOMAIN, pin)
    else:
        d = Path(tempfile.mkdtemp(dir=tmp))
        server = start_server(
            "bare" if kind == "bare" else "poolsim", 2 * PAIRS + PRESENCE_USERS, "memory", d
        )
        if pin:
            os.sched_setaffinity(server.proc.pid, pin)
    try:
        if isinstance(server, EjabberdProcess):
            side = await _ejabberd_side(server, counts)
        elif kind == "bare":
            side = await _bare_side(server.address, counts)
        else:
            side = await _poolsim_side(server.address, kind, counts)
        try:
            await _messages(side, counts, PAIRS * 20)  # warm up
            await _presence(side, counts, 2, "w")
            s0, c0, t0 = server.cpu(), time.process_time(), time.perf_counter()
            await _messages(side, counts, messages)
            s1, c1, t1 = server.cpu(), time.process_time(), time.perf_counter()
            await _presence(side, counts, changes, "r")
            s2, c2 = server.cpu(), time.process_time()
        finally:
            for task in side.readers:
                task.cancel()
            await side.close()
    finally:
        server.stop()
    notifications = PRESENCE_USERS * changes * WATCHERS
    return {
        "message_server_us": (s1 - s0) / messages * 1e6,
        "message_client_us": (c1 - c0) / messages * 1e6,
        "messages_per_s": messages / (t1 - t0),
        "notification_server_us": (s2 - s1) / notifications * 1e6,
        "notification_client_us": (c2 - c1) / notifications * 1e6,
    }


async def _measure(rounds: int, messages: int, changes: int) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    sides = (*SIDES, EJABBERD) if ejabberdctl() else SIDES
    out: dict[str, Any] = {kind: [] for kind in sides}
    with tempfile.TemporaryDirectory(prefix="poolsim-bench-") as tmp, _pinned(cpus[:1], pinned):
        for _ in range(rounds):
            for kind in sides:  # alternately
                out[kind].append(
                    await _one_round(
                        kind, Path(tmp), messages, changes, cpus[-1:] if pinned else []
                    )
                )
    out["pinning"] = (
        f"client on CPU {cpus[0]}, servers on CPU {cpus[-1]}" if pinned else "none (one CPU)"
    )
    return out


def run_session(opts: Options) -> Result:
    rounds = 1 if opts.quick else 3
    messages = 2_000 if opts.quick else MESSAGES
    changes = 4 if opts.quick else CHANGES
    data = asyncio.run(_measure(rounds, messages, changes))
    sides = [k for k in (*SIDES, EJABBERD) if k in data]
    fig = {k: {m: median([r[m] for r in data[k]]) for m in data[k][0]} for k in sides}
    result = Result("session")
    s, u, b = fig["session"], fig["unary"], fig["bare"]
    details = {f"{k}_{m}": v for k in sides for m, v in fig[k].items()}
    ej = fig.get(EJABBERD)
    reference = {key: ej[f"{key}_us"] for key in REFERENCE_US} if ej is not None else REFERENCE_US
    baseline = (
        "ejabberd 23.01, measured in this run (raw XMPP clients on the same workload)"
        if ej is not None
        else "ejabberd 23.01, the issue's measurement (ejabberd is not installed here)"
    )
    for key, name in (
        ("message_server", "session: server CPU per routed message"),
        ("notification_server", "session: server CPU per presence notification"),
    ):
        result.rows.append(
            make_row(
                name,
                "us",
                s[f"{key}_us"],
                reference[key],
                GOAL,
                higher_is_better=False,
                details={"baseline": baseline, **details},
            )
        )
    # the client's goal is the next row (no more than the server); this one is its figure
    # against a raw XMPP client, which writes and parses text with no RPC layer at all
    result.rows.append(
        make_comparison(
            "session: client CPU per message (PoolClient) vs ejabberd's raw XMPP client",
            "us",
            s["message_client_us"],
            reference["message_client"],
            details={"baseline": baseline},
        )
    )
    result.rows.append(
        make_row(
            "session: client CPU per message against the server's",
            "us",
            s["message_client_us"],
            s["message_server_us"],
            1.0,
            higher_is_better=False,
        )
    )
    for key in ("message_server", "notification_server", "message_client"):
        result.rows.append(
            make_comparison(
                f"session vs unary: {key.replace('_', ' ')} CPU",
                "us",
                s[f"{key}_us"],
                u[f"{key}_us"],
            )
        )
        result.rows.append(
            make_comparison(
                f"session vs bare bidi echo: {key.replace('_', ' ')} CPU",
                "us",
                s[f"{key}_us"],
                b[f"{key}_us"],
            )
        )
    result.params = {
        "pairs": PAIRS,
        "messages": messages,
        "window_per_pair": WINDOW,
        "presence_users": PRESENCE_USERS,
        "changes_per_user": changes,
        "watchers_per_user": WATCHERS,
        "rounds": rounds,
        "store": "memory",
        "cpu_pinning": data["pinning"],
        "by_round": {k: data[k] for k in sides},
        "reference": baseline,
    }
    result.notes.append(
        "processor per operation from the processes' own counters (server: /proc stat of its "
        "process; client: this process's process_time), medians of alternating rounds; the "
        f"first three rows' baseline: {baseline} (goal: at most 2x)"
    )
    return result
