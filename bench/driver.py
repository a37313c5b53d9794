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

Endpoints send their calls over ``FrontEnd.Session`` streams by default (one per endpoint,
carrying its calls and its events: ``DriverConfig.transport``), or one unary RPC per call.
The operations themselves are in ``bench.driver_ops``; the configuration, ledger and
yardsticks in ``bench.driver_config``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator

from bench.collector import freeze_heap, quiet_gc
from bench.driver_config import (
    DRAIN_S,
    OP_NAME,
    READ_RETRY_S,
    SETTLE_S,
    SIGN_OUT_BATCH,
    SWEEP_S,
    UNCERTAIN_KEPT,
    UNDELIVERED_AFTER_S,
    DriverConfig,
    Ledger,
    code_of,
    offered_calls_per_s,
    steady_conferences,
)
from bench.driver_metrics import DriverMetrics
from bench.driver_ops import Operations
from bench.failover import Failover
from bench.model import UserModel
from bench.schedule import Kind, Planned, Population
from bench.selfcheck import LATE_S, Health, Readiness, WindowGate
from bench.stats import Phase, Recorder
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.client import PoolClient, Session
from pool.errors import PoolError

__all__ = [
    "UNCERTAIN_KEPT",
    "Driver",
    "DriverConfig",
    "Ledger",
    "code_of",
    "offered_calls_per_s",
    "steady_conferences",
]


class Driver(Operations):
    def __init__(
        self,
        config: DriverConfig,
        model: UserModel,
        pop: Population,
        plan: Iterable[Planned],
        recorder: Recorder | None = None,
        failover: Failover | None = None,
        metrics: DriverMetrics | None = None,
        on_phase: Callable[[Phase, float], None] | None = None,
    ) -> None:
        """``on_phase`` is called with each phase as it begins (and the run second)."""
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
        self._uris: dict[int, str] = {}  # user -> SIP URI, made once
        self.rng = random.Random(config.seed)
        self.clients = [
            PoolClient(config.start_addresses(k), transport=config.transport)
            for k in range(max(1, config.channels))
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
        self.on_phase = on_phase
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
        #: what runs each kind of planned operation
        self._runs: dict[Kind, Callable[[Planned], Awaitable[None]]] = {
            Kind.PUBLISH: self._publish,
            Kind.POLL: self._poll,
            Kind.SUBSCRIBE: self._subscribe,
            Kind.IM_SESSION: self._im_session,
            Kind.CONFERENCE: self._conference,
        }

    # --- time ---

    def uri(self, user: int) -> str:
        uri = self._uris.get(user)
        if uri is None:
            uri = self._uris[user] = self.cfg.uri(user)
        return uri

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
            if not pending and self.phase is Phase.RAMP:
                self.enter(Phase.SETTLING)
                freeze_heap()  # the signed-in sessions live to the end
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
        with quiet_gc():
            return await self._run()

    async def _run(self) -> Recorder:
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
        self._spawn(self._runs[op.kind](op))

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
                    self.uri(user), self.cfg.password, "desktop" if e == 0 else f"device{e}"
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
                sessions[0].call(
                    "Subscribe", pb.SubscribeRequest(user_uris=[self.uri(c) for c in contacts])
                ),
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
