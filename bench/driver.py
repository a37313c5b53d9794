"""The load driver: simulated users on a few channels, operations started on an open-loop
schedule, latency measured from when each operation *should* have started.

One driver process carries thousands of simulated users: each endpoint is a ``Session`` of
``pool.client`` with one event-stream task; operations are short tasks started by a single
scheduler loop; in-flight operations are capped (beyond the cap they are counted as skipped,
never queued without bound). Invitations are accepted by the invitee's first endpoint as its
event stream delivers them; IM text carries a tag so the recipient's event closes the
end-to-end delivery measurement.

Against an Enterprise pool the driver is given every front end's address: each channel's
client starts its sign-ins at a different one and follows the redirect to the user's home.
Sessions sign in again by themselves after a fail-over, and an endpoint's event reader opens a
new stream when its front end went away. With a ``Failover`` (``poolsim run
--kill-front-end-at``) the driver tells it of every success and marks the operations caught in
the fail-over (``bench.failover``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from bench.driver_metrics import DriverMetrics
from bench.failover import Failover
from bench.model import UserModel
from bench.schedule import Kind, Planned, Population, pick_size
from bench.selfcheck import LATE_S, Health, Readiness, WindowGate
from bench.stats import Phase, Recorder
from pool.api.status import code_of as status_code_of
from pool.client import PoolClient, Session, TransportError
from pool.errors import PoolError

DRAIN_S = 10.0  # at the end, in-flight operations get this long to finish
ACCEPT_WAIT_S = 15.0  # the Lync client accepts an unanswered IM invitation after 15 s
PUBLISHED = ((3500, 0.45), (6500, 0.3), (12500, 0.1), (15500, 0.1), (9500, 0.05))
#: the row of the report where each planned kind's latency, late starts and skips go
OP_NAME = {
    Kind.PUBLISH: "publish",
    Kind.POLL: "poll",
    Kind.SUBSCRIBE: "subscribe",
    Kind.IM_SESSION: "im-invite",
    Kind.CONFERENCE: "conference-create",
}
SETTLE_S = 5.0  # at the end, messages in flight get this long to arrive
READ_RETRY_S = 0.25  # an event reader whose front end went away tries again after this
SIGN_OUT_BATCH = 200  # endpoints signed out at once at the end
LEDGER_TRIES = 3  # reading back one acknowledged write: attempts before it counts as unreadable
UNCERTAIN_KEPT = 8  # failed writes kept per user after its last acknowledged one
UNDELIVERED_AFTER_S = 120.0  # a message not delivered by then is counted undelivered, forgotten
SWEEP_S = 10.0  # how often the driver forgets what it no longer needs


def code_of(exc: BaseException) -> str:
    """A status name for the stress tool's 'responses by status code'."""
    if isinstance(exc, TransportError):
        return exc.code.name
    if isinstance(exc, PoolError):
        return status_code_of(exc).name
    return "DEADLINE_EXCEEDED" if isinstance(exc, TimeoutError) else "INTERNAL"


@dataclass(frozen=True, slots=True)
class DriverConfig:
    address: str
    user_indices: tuple[int, ...]  # which users of the population this driver plays
    #: every front end of the pool (Enterprise), ``address`` first; empty: ``address`` alone
    addresses: tuple[str, ...] = ()
    prefix: str = "user"
    domain: str = "contoso.com"
    password: str = "poolsim"
    duration: float = 60.0
    speedup: float = 1.0  # IM pacing and subscription lengths shrink by it
    channels: int = 4
    max_in_flight: int = 2000
    seed: int = 1
    #: the measurement window opens no later than this (run seconds; None: when the steady
    #: state is reached, see ``bench.selfcheck.WindowGate``); tests set it
    window_at: float | None = None

    def uri(self, user: int) -> str:
        return f"sip:{self.prefix}{user}@{self.domain}"

    def start_addresses(self, channel: int) -> str | tuple[str, ...]:
        """What channel ``channel``'s client is given: the pool's front ends, rotated so that
        each channel starts its sign-ins at a different one."""
        if len(self.addresses) < 2:
            return self.address
        k = channel % len(self.addresses)
        return self.addresses[k:] + self.addresses[:k]


@dataclass
class Ledger:
    """Acknowledged persistent writes, read back at the end to prove none was lost.

    ``uncertain`` keeps, per user, the writes tried after the last acknowledged one that failed:
    a failure (a crash under way, say) does not prove the write was not applied, so reading
    one of those back is no loss; reading back anything older is.

    Bounded per user: the latest acknowledged value and at most ``UNCERTAIN_KEPT`` failed
    ones after it; a user with more (``overflowed``) whose read-back matches none of them is
    unverifiable, not lost (the value may be one of those forgotten)."""

    presence: dict[int, tuple[int, str]] = field(default_factory=dict)
    uncertain: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    overflowed: set[int] = field(default_factory=set)

    def acknowledged(self, user: int, value: tuple[int, str]) -> None:
        self.presence[user] = value
        self.uncertain.pop(user, None)
        self.overflowed.discard(user)

    def failed(self, user: int, value: tuple[int, str]) -> None:
        kept = self.uncertain.setdefault(user, [])
        kept.append(value)
        if len(kept) > UNCERTAIN_KEPT:
            del kept[0]
            self.overflowed.add(user)


class Driver:
    def __init__(
        self,
        config: DriverConfig,
        model: UserModel,
        pop: Population,
        plan: Iterable[Planned],
        recorder: Recorder | None = None,
        failover: Failover | None = None,
        metrics: DriverMetrics | None = None,
    ) -> None:
        self.cfg = config
        self.model = model
        self.pop = pop
        mine = set(config.user_indices)
        #: the schedule, read as the run goes (a ``bench.schedule.Schedule`` is generated so)
        self.plan: Iterable[Planned] = (
            plan if len(mine) == pop.users else (p for p in plan if p.user in mine)
        )
        self.users = sorted(mine)
        self.rec = recorder or Recorder()
        self.metrics = metrics
        if metrics is not None:
            self.rec.listener = metrics
        self.ledger = Ledger()
        self.rng = random.Random(config.seed)
        self.clients = [
            PoolClient(config.start_addresses(k)) for k in range(max(1, config.channels))
        ]
        self.sessions: dict[int, list[Session]] = {}
        self.readers: list[asyncio.Task[None]] = []
        self.in_flight: set[asyncio.Task[None]] = set()
        self.accepted: dict[str, asyncio.Event] = {}
        self.sent_at: dict[str, float] = {}  # message tag -> when the send was called
        self.sent_in: dict[str, str] = {}  # message tag -> its conversation
        #: conversation -> its simulated users (with a fail-over, kept to the end: its report
        #: needs them; otherwise forgotten when the conversation ends)
        self.members: dict[str, tuple[int, ...]] = {}
        #: conferences this driver has under way (the harness compares it with
        #: ``bench.schedule.expected_conferences``)
        self.conferences_open = 0
        self.failover = failover
        self.enterprise = len(config.addresses) > 1
        self._tag = 0
        self._delivered = asyncio.Event()  # set whenever no sent message awaits delivery
        self.t0 = 0.0
        self.stopping = False
        self.phase = Phase.PROVISIONING
        #: called with each phase as it begins (and the run second)
        self.on_phase: Callable[[Phase, float], None] | None = None
        self.health = Health(on_lag=metrics.lag if metrics is not None else None)
        self.calls_in_flight = 0
        self.sign_ins_answered = 0
        self._started = self._late = self._skipped = 0  # operations started, late, skipped
        self.gate = WindowGate(
            offered_calls_per_s(model, len(self.users), config.speedup),
            steady_conferences(model, len(self.users), config.speedup),
        )
        #: run time the schedule ends at: ``cfg.duration``, or sooner after ``stop()``
        self.end_at = config.duration
        self._schedule: asyncio.Task[None] | None = None
        self.progress: Callable[[Driver], None] | None = None

    # --- time ---

    def uri(self, user: int) -> str:
        return self.cfg.uri(user)

    def now(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0

    async def until(self, at: float) -> None:
        """Sleep until run second ``at``."""
        delay = at - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    # --- phases ---

    def enter(self, phase: Phase) -> None:
        """Begin ``phase`` (phases only move forward)."""
        order = list(Phase)
        if order.index(phase) <= order.index(self.phase):
            return
        self.phase = phase
        at = self.now()
        self.rec.enter(phase, at)
        if self.metrics is not None:
            self.metrics.phase(phase)
        if self.on_phase is not None:
            self.on_phase(phase, at)

    async def _watch_phases(self) -> None:
        """Once a second: the ramp is over when every sign-in was answered; the window opens
        when the gate says the steady state is reached (or at ``window_at``)."""
        seen = (0, 0, 0)
        while self.phase in (Phase.RAMP, Phase.SETTLING):
            await asyncio.sleep(1.0)
            pending = len(self.users) - self.sign_ins_answered
            if not pending:
                self.enter(Phase.SETTLING)
            now = (self._started, self._late, self._skipped)
            ready = self.gate.ready(
                Readiness(
                    sign_ins_pending=pending,
                    calls_in_flight=self.calls_in_flight,
                    started=now[0] - seen[0],
                    late=now[1] - seen[1],
                    skipped=now[2] - seen[2],
                    conferences=self.conferences_open,
                )
            )
            seen = now
            forced = self.cfg.window_at is not None and self.now() >= self.cfg.window_at
            if (ready or forced) and self.now() < self.cfg.duration:
                self.enter(Phase.SETTLING)
                self.enter(Phase.WINDOW)

    # --- the run ---

    def stop(self) -> None:
        """End the run now (Ctrl-C, SIGTERM): no new operation starts; what is under way
        finishes as at the planned end, and ``run`` returns what was measured."""
        if self.stopping:
            return
        self.end_at = min(self.end_at, self.now())
        self.stopping = True
        if self._schedule is not None:
            self._schedule.cancel()

    async def _follow_schedule(self) -> None:
        for op in self.plan:
            await self.until(op.at)
            if self.now() >= self.end_at:
                break
            self._start(op)
        await self.until(self.end_at)

    async def run(self) -> Recorder:
        self.t0 = time.perf_counter()
        self.enter(Phase.RAMP)
        self.health.start(self.now, self.rec.in_window, lambda: self.calls_in_flight)
        signins = (Planned(self.pop.sign_in_at[u], u, Kind.PUBLISH) for u in self.users)
        ramp = asyncio.create_task(self._ramp(signins))
        phases = asyncio.create_task(self._watch_phases())
        kill = asyncio.create_task(self.failover.run(self)) if self.failover else None
        sweep = asyncio.create_task(self._sweep())
        self._schedule = asyncio.create_task(self._follow_schedule())
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self._schedule  # cancelled by stop()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # run() itself was cancelled
        finally:
            if self.rec.window_from is None:
                self.health.blocked = list(self.gate.why) or ["the run ended during the ramp"]
            self.enter(Phase.WIND_DOWN)
            self.stopping = True
            self._schedule.cancel()
            for task in (ramp, phases, kill, sweep):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self._drain()
        if self.sent_at:
            self._delivered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._delivered.wait(), SETTLE_S)
        self._undelivered(list(self.sent_at))
        self.rec.count("im_messages_undelivered", 0)
        await self.verify_ledger()
        self._count_reconnections()
        await self.close()
        await self.health.stop()
        return self.rec

    def _undelivered(self, tags: list[str]) -> None:
        """Count the messages ``tags`` as never delivered (lost in the fail-over when sent in
        its window or in a conversation the crash broke) and forget them."""
        fo = self.failover
        lost = 0
        for tag in tags:
            sent = self.sent_at.pop(tag)
            cid = self.sent_in.pop(tag, "")
            if fo is not None and (fo.during(sent) or fo.broken(cid, self.members.get(cid, ()))):
                lost += 1
        if lost:
            self.rec.count("im_messages_lost_in_failover", lost)
        if len(tags) > lost:
            self.rec.count("im_messages_undelivered", len(tags) - lost)

    async def _sweep(self) -> None:
        """Every ``SWEEP_S``: messages sent longer than ``UNDELIVERED_AFTER_S`` ago count as
        undelivered and are forgotten, so what the driver keeps stays bounded."""
        while True:
            await asyncio.sleep(SWEEP_S)
            cutoff = self.now() - UNDELIVERED_AFTER_S / self.cfg.speedup
            # sent_at is in sending order (dicts keep insertion order)
            old: list[str] = []
            for tag, sent in self.sent_at.items():
                if sent >= cutoff:
                    break
                old.append(tag)
            if old:
                self._undelivered(old)
            self.rec.series.advance(self.now())

    def _count_reconnections(self) -> None:
        endpoints = [s for sessions in self.sessions.values() for s in sessions]
        reconnected = [s.reconnections for s in endpoints if s.reconnections]
        if reconnected:
            self.rec.count("sessions_reconnected", len(reconnected))
            self.rec.count("session_reconnections", sum(reconnected))

    def _start(self, op: Planned) -> None:
        name = OP_NAME[op.kind]
        if op.user not in self.sessions:
            self.rec.not_started(name, op.at)  # not signed in (yet, or sign-in failed)
            return
        self._started += 1
        if len(self.in_flight) >= self.cfg.max_in_flight:
            self._skipped += 1
            self.rec.skipped(name, op.at)
            return
        if self.now() - op.at > LATE_S:
            self._late += 1
            self.rec.late(name, op.at)
        run = {
            Kind.PUBLISH: self._publish,
            Kind.POLL: self._poll,
            Kind.SUBSCRIBE: self._subscribe,
            Kind.IM_SESSION: self._im_session,
            Kind.CONFERENCE: self._conference,
        }[op.kind]
        self._spawn(run(op))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _drain(self) -> None:
        if self.in_flight:
            _, pending = await asyncio.wait(set(self.in_flight), timeout=DRAIN_S)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        if self.readers:
            await asyncio.wait(self.readers)
        endpoints = [s for sessions in self.sessions.values() for s in sessions]
        for i in range(0, len(endpoints), SIGN_OUT_BATCH):
            await asyncio.gather(
                *(s.sign_out() for s in endpoints[i : i + SIGN_OUT_BATCH]), return_exceptions=True
            )
        for client in self.clients:
            await client.close()

    async def _timed(
        self,
        name: str,
        at: float,
        call: Awaitable[object],
        session: Session | None = None,
        conversation: str = "",
    ) -> object | None:
        """Await ``call``; record its latency from ``at`` under ``name`` with its status.

        ``session`` made the call and ``conversation`` is the one it is about: with a
        ``Failover``, they tell whether the call was caught in it (or served an affected user
        again)."""
        fo = self.failover
        self.calls_in_flight += 1
        try:
            result = await call
        except (PoolError, TimeoutError) as exc:
            self.calls_in_flight -= 1
            end = self.now()
            caught = fo is not None and self._broken_by(fo, at, end, conversation)
            code = code_of(exc)
            self.rec.record(name, at, end - at, code, failover=caught)
            self.rec.error_sample(name, code, str(exc) or type(exc).__name__)
            return None
        self.calls_in_flight -= 1
        end = self.now()
        caught = fo is not None and fo.in_window(at, end)
        self.rec.record(name, at, end - at, "OK", failover=caught)
        if fo is not None and session is not None:
            fo.succeeded(session, end)
        return result

    def _broken_by(self, fo: Failover, at: float, end: float, conversation: str) -> bool:
        """Whether an operation (intended at ``at``, ended at ``end``) that failed was caught
        in the fail-over: inside its window, or about a conversation the crash broke."""
        if fo.in_window(at, end):
            return True
        members = self.members.get(conversation, ())
        return (
            bool(conversation)
            and end >= (fo.kill_at or math.inf)
            and fo.broken(conversation, members)
        )

    # --- sign-in ramp ---

    async def _ramp(self, signins: Iterator[Planned]) -> None:
        for op in signins:
            await self.until(op.at)
            self._spawn(self._sign_in(op.user, op.at))

    async def _sign_in(self, user: int, at: float) -> None:
        try:
            await self._sign_in_endpoints(user, at)
        finally:
            self.sign_ins_answered += 1

    async def _sign_in_endpoints(self, user: int, at: float) -> None:
        client = self.clients[user % len(self.clients)]
        sessions: list[Session] = []
        for e in range(self.pop.endpoints[user]):
            self.rec.count("logon_attempts")
            s = await self._timed(
                "sign-in",
                at,
                client.sign_in(
                    self.cfg.uri(user), self.cfg.password, "desktop" if e == 0 else f"device{e}"
                ),
            )
            if isinstance(s, Session) and self.failover is not None:
                self.failover.succeeded(s, self.now())
            if not isinstance(s, Session):
                self.rec.count("logon_failures")
                continue
            sessions.append(s)
            self.readers.append(asyncio.create_task(self._read(user, e, s)))
        if not sessions:
            return
        self.sessions[user] = sessions
        contacts = self.pop.contacts[user][: self.model.batch_subscription]
        if contacts and not self.stopping:
            await self._timed(
                "batch-subscribe",
                self.now(),
                sessions[0].subscribe([self.cfg.uri(c) for c in contacts]),
                sessions[0],
            )

    async def _read(self, user: int, index: int, session: Session) -> None:
        """One endpoint's event stream: accept invitations, close delivery measurements.

        In an Enterprise pool, a stream that failed because its front end went away and could
        not sign in again yet (the fail-over is under way) is tried again until the run ends."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                try:
                    await self._read_stream(index, session)
                    return
                except PoolError:
                    if not self.enterprise or self.stopping or not session.auto_reconnect:
                        return
                await asyncio.sleep(READ_RETRY_S)

    async def _read_stream(self, index: int, session: Session) -> None:
        async for event in session.events():
            kind = event.WhichOneof("kind")
            if kind == "message":
                self._received(event.message.body)
            elif kind == "invitation":
                if event.invitation.first_message.body:
                    self._received(event.invitation.first_message.body)
                if index == 0 and not self.stopping:
                    self._spawn(self._accept(session, event.invitation.conversation_id))
            elif kind == "presence":
                self.rec.count("presence_notifications")
            elif kind == "dropped":
                self.rec.count("events_dropped", event.dropped.count)

    def _received(self, body: str) -> None:
        self.rec.count("im_messages_received")
        tag = body.partition(" ")[0]
        sent = self.sent_at.pop(tag, None)
        self.sent_in.pop(tag, None)
        if not self.sent_at:
            self._delivered.set()
        if sent is not None:  # the first recipient closes the end-to-end measurement
            now = self.now()
            caught = self.failover is not None and self.failover.in_window(sent, now)
            self.rec.record("delivery", sent, now - sent, "OK", failover=caught)

    async def _accept(self, session: Session, conversation_id: str) -> None:
        call = session.accept(conversation_id)
        if await self._timed("accept", self.now(), call, session, conversation_id) is not None:
            self.accepted.setdefault(conversation_id, asyncio.Event()).set()

    # --- presence ---

    def _choose(self, mix: tuple[tuple[int, float], ...]) -> int:
        return pick_size(mix, self.rng)

    async def _publish(self, op: Planned) -> None:
        s = self.sessions[op.user][0]
        x = self.rng.random()
        availability = 3500
        for value, weight in PUBLISHED:
            x -= weight
            if x < 0:
                availability = value
                break
        note = f"note {self.rng.randrange(1000)}"
        call = s.publish_presence(availability, note=note)
        if await self._timed("publish", op.at, call, s) is not None:
            self.ledger.acknowledged(op.user, (availability, note))
        else:
            self.ledger.failed(op.user, (availability, note))

    def _some_users(self, user: int, n: int) -> list[str]:
        contacts = self.pop.contacts[user]
        if len(contacts) >= n:
            picks = self.rng.sample(contacts, n)
        else:
            picks = [self.rng.randrange(self.pop.users) for _ in range(n)]
        return [self.cfg.uri(p) for p in picks]

    async def _poll(self, op: Planned) -> None:
        s = self.sessions[op.user][0]
        await self._timed(
            "poll",
            op.at,
            s.get_presence(self._some_users(op.user, self._choose(self.model.poll_sizes))),
            s,
        )

    async def _subscribe(self, op: Planned) -> None:
        s = self.sessions[op.user][0]
        expires = max(1, int(self.model.short_subscription_s / self.cfg.speedup))
        call = s.subscribe(self._some_users(op.user, 1), expires)
        await self._timed("subscribe", op.at, call, s)

    # --- conversations ---

    def _partners(self, user: int, n: int) -> list[int]:
        """Up to ``n`` signed-in contacts of ``user`` played by this driver."""
        candidates = [c for c in self.pop.contacts[user] if c in self.sessions]
        if len(candidates) < n:
            candidates = [u for u in self.users if u != user and u in self.sessions]
        return self.rng.sample(candidates, min(n, len(candidates)))

    def _body(self) -> tuple[str, str]:
        self._tag += 1
        tag = f"#{self._tag}"
        filler = "x" * max(0, self.model.message_bytes - len(tag) - 1)
        return tag, f"{tag} {filler}"

    async def _send(self, s: Session, conversation_id: str, at: float) -> bool:
        cid = conversation_id
        if self.model.typing_per_message:
            await self._timed("typing", at, s.set_typing(cid, True), s, cid)
        tag, body = self._body()
        self.sent_at[tag] = self.now()
        self.sent_in[tag] = cid
        ok = await self._timed("send", at, s.send_message(cid, body), s, cid) is not None
        if ok:
            self.rec.count("im_messages_sent")
        else:
            self.sent_at.pop(tag, None)
            self.sent_in.pop(tag, None)
        if self.model.typing_per_message:
            await self._timed("typing", self.now(), s.set_typing(cid, False), s, cid)
        return ok

    async def _wait_accepted(self, conversation_id: str) -> bool:
        event = self.accepted.setdefault(conversation_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), ACCEPT_WAIT_S)
        except TimeoutError:
            return False
        return True

    async def _im_session(self, op: Planned) -> None:
        partners = self._partners(op.user, 1)
        if not partners:
            self.rec.not_started(OP_NAME[op.kind], op.at)
            return
        caller = self.sessions[op.user][0]
        callee = self.sessions[partners[0]][0]
        self.rec.count("im_sessions_attempted")
        tag, body = self._body()
        self.sent_at[tag] = self.now()
        conv = await self._timed(
            "im-invite",
            op.at,
            caller.create_conversation([self.cfg.uri(partners[0])], first_message=body),
            caller,
        )
        if conv is None or not hasattr(conv, "conversation_id"):
            self.sent_at.pop(tag, None)
            return
        cid = conv.conversation_id
        self.members[cid] = (op.user, partners[0])
        if tag in self.sent_at:
            self.sent_in[tag] = cid
        self.rec.count("im_messages_sent")
        if self.model.typing_per_message:  # the first message's typing notices (SPEC 7)
            await self._timed("typing", self.now(), caller.set_typing(cid, True), caller, cid)
            await self._timed("typing", self.now(), caller.set_typing(cid, False), caller, cid)
        try:
            await self._im_messages(op, cid, caller, callee)
        finally:
            self._ended(cid)

    async def _im_messages(self, op: Planned, cid: str, caller: Session, callee: Session) -> None:
        if not await self._wait_accepted(cid):
            with contextlib.suppress(PoolError):
                await caller.leave(cid)
            return
        self.rec.count("im_sessions_established")
        interval = self.model.message_interval_s / self.cfg.speedup
        for k in range(1, self.model.messages_per_session):
            at = op.at + k * interval
            if at >= self.end_at or self.stopping:
                break
            await self.until(at)
            if not await self._send(caller if k % 2 == 0 else callee, cid, at):
                break
        with contextlib.suppress(PoolError):
            await caller.leave(cid)

    def _ended(self, cid: str) -> None:
        """Forget a conversation that ended (kept to the end of a fail-over run)."""
        self.accepted.pop(cid, None)
        if self.failover is None:
            self.members.pop(cid, None)

    async def _conference(self, op: Planned) -> None:
        size = self._choose(self.model.conference_sizes)
        others = self._partners(op.user, size - 1)
        if len(others) < 2:
            self.rec.not_started(OP_NAME[op.kind], op.at)
            return
        organizer = self.sessions[op.user][0]
        conv = await self._timed(
            "conference-create",
            op.at,
            organizer.create_conversation([self.cfg.uri(u) for u in others], subject="group IM"),
            organizer,
        )
        if conv is None or not hasattr(conv, "conversation_id"):
            return
        cid = conv.conversation_id
        self.members[cid] = (op.user, *others)
        self.rec.count("conferences")
        if op.remaining < 1.0:
            self.rec.count("conferences_in_progress_at_sign_in")
        self.conferences_open += 1
        try:
            await self._conference_messages(
                op, cid, [organizer, *(self.sessions[u][0] for u in others)]
            )
        finally:
            self.conferences_open -= 1
            self._ended(cid)

    def conference_length(self, op: Planned) -> float:
        """How long the conference planned as ``op`` lasts (seconds): what is left of it
        (``op.remaining``: all of it, or what a conference in progress at the organizer's
        sign-in has left)."""
        return op.remaining * self.model.conference_minutes * 60 / self.cfg.speedup

    async def _conference_messages(self, op: Planned, cid: str, members: list[Session]) -> None:
        """Each member's messages at random times over what is left of the conference's
        length; the conference lasts that out (or the run), then everyone leaves."""
        length = self.conference_length(op)
        per_member = self.model.messages_per_conference_user * op.remaining
        sends = sorted(
            (op.at + self.rng.uniform(0, length), m)
            for m in range(len(members))
            for _ in range(int(per_member) + (self.rng.random() < per_member % 1))
        )
        for at, who in sends:
            if at >= self.end_at or self.stopping:
                break
            await self.until(at)
            await self._send(members[who], cid, at)
        if not self.stopping:
            await self.until(min(op.at + length, self.end_at))
        for member in members:
            with contextlib.suppress(PoolError):
                await member.leave(cid)

    # --- the ledger ---

    async def verify_ledger(self) -> None:
        """Read back every acknowledged manual presence; count any that was lost.

        A value tried after the acknowledged one, whose call failed, may have been applied: it
        is no loss. After a fail-over the session signs in again by itself; a read that still
        fails is tried again (``LEDGER_TRIES``) before it counts as unreadable."""
        affected = self.failover.affected_users if self.failover is not None else set()
        for user, acked in self.ledger.presence.items():
            sessions = self.sessions.get(user)
            if not sessions:
                continue
            me = None
            for attempt in range(LEDGER_TRIES):
                try:
                    me = (await sessions[0].get_presence([self.cfg.uri(user)]))[0]
                    break
                except PoolError:
                    if not self.enterprise or attempt == LEDGER_TRIES - 1:
                        break
                    await asyncio.sleep(READ_RETRY_S)
            if me is None:
                self.rec.count("ledger_unreadable")
                continue
            self.rec.count("ledger_checked")
            if user in affected:
                self.rec.count("ledger_checked_affected")
            seen = (me.availability, me.note)
            if seen != acked:
                if seen in self.ledger.uncertain.get(user, ()):
                    self.rec.count("ledger_unacknowledged_applied")
                elif user in self.ledger.overflowed:
                    self.rec.count("ledger_unverifiable")
                else:
                    self.rec.count("ledger_lost")


def offered_calls_per_s(model: UserModel, users: int, speedup: float) -> float:
    """Calls per second the model offers ``users`` signed-in users in the steady state (the
    gate's yardstick for "calls in flight back at their baseline")."""
    typing = 2 if model.typing_per_message else 0
    per_user = (
        model.polls_per_s
        + model.publications_per_s
        + model.short_subscriptions_per_s
        + model.im_sessions_per_s * (2 + (1 + typing) * model.messages_per_session)
        + model.conferences_per_s
        * model.mean_conference_size
        * (1 + (1 + typing) * model.messages_per_conference_user)
    )
    return users * per_user


def steady_conferences(model: UserModel, users: int, speedup: float) -> float:
    """Conferences in progress in the steady state (Little's law: rate x length)."""
    return users * model.conferences_per_s * model.conference_minutes * 60 / speedup
