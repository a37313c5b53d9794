"""Overload as Lync meets it, through a real grpc.aio server on loopback with the fake clock:
"server too busy" after a slow store write (UNAVAILABLE, a retry-after, nothing changed), and
flow control when the average holding time goes over its limit (one request under way per
endpoint, the rest held, on both transports; a request held too long is answered).

A store write "takes" as long as the test says by moving the fake clock inside it; a call is
held under way by a gate in the service (``GatedService``), so nothing here waits on time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import generate_latest

from bench.probe import wanted_figures
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api import frontend
from pool.api.server import TICK_MAX
from pool.api.session import SessionStream
from pool.api.status import DETAILS_KEY
from pool.client import PoolClient, Session
from pool.clock import FakeClock
from pool.config import EngineConfig, Throttling
from pool.engine import Engine
from pool.errors import ServerTooBusy
from pool.registrar import Endpoint
from pool.service import LocalService
from pool.sqlite_store import SqliteStore
from pool.store import PresenceRow
from pool.throttle import HELD_TOO_LONG, SERVER_TOO_BUSY, FlowState
from tests.conftest import PASSWORD, StandardPool, eventually, start_standard, uri

TRANSPORTS = ("unary", "session")
BUSY = 6500  # availability: Busy


class SlowStore(SqliteStore):
    """A store whose presence writes take ``delay`` seconds of the fake clock."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        super().__init__(path)
        self.clock = clock
        self.delay = 0.0

    def put_presence(self, row: PresenceRow) -> None:
        super().put_presence(row)
        self.clock.advance(self.delay)


class GatedService(LocalService):
    """Typing notices wait for ``gate`` (while it is closed) before they run: a call held
    under way for as long as a test wants (calls about two conversations may run together on
    a Session stream, where calls about the same one run in order)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = 0  # typing notices that reached the gate
        self.inside = 0  # waiting at it now

    async def set_typing(self, ep: Endpoint, conversation_id: str, typing: bool) -> None:
        self.entered += 1
        self.inside += 1
        try:
            await self.gate.wait()
        finally:
            self.inside -= 1
        await super().set_typing(ep, conversation_id, typing)


SETTINGS = Throttling(
    store_latency_limit=5.0,
    holding_time_limit=6.0,
    holding_time_release=3.0,
    outstanding_limit=20,
    flow_controlled_outstanding=1,
    held_request_limit=60.0,
    retry_after=10.0,
)


@pytest.fixture
async def slow(tmp_path: Path) -> AsyncIterator[StandardPool]:
    config = EngineConfig(password_iterations=1, throttling=SETTINGS)
    p = await start_standard(tmp_path, config, store=SlowStore)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def gated(tmp_path: Path) -> AsyncIterator[StandardPool]:
    config = EngineConfig(password_iterations=1, throttling=SETTINGS)
    p = await start_standard(tmp_path, config, service=GatedService)
    try:
        yield p
    finally:
        await p.close()


def busy_503s(pool: StandardPool, reason: str) -> float:
    return pool.metric("poolsim_local_503_responses_total", {"reason": reason})


async def sign_in(pool: StandardPool, i: int, transport: str) -> tuple[PoolClient, Session]:
    client = PoolClient(pool.address, transport=transport)
    return client, await client.sign_in(uri(i), PASSWORD)


# --- server too busy: the store queue ---


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_slow_store_write_makes_new_requests_too_busy(
    slow: StandardPool, transport: str
) -> None:
    store = slow.engine.store
    assert isinstance(store, SlowStore)
    client, session = await sign_in(slow, 1, transport)
    try:
        store.delay = 5.0  # this write takes the store queue to its limit
        await session.publish_presence(availability=BUSY, note="before")
        store.delay = 0.0
        assert slow.engine.throttle.store_latency == 5.0
        assert slow.metric("poolsim_store_queue_latency_seconds") == 5.0
        user = slow.engine.directory.get(uri(1))
        assert user is not None
        [ep] = user.endpoints
        expires = ep.expires_at
        with pytest.raises(ServerTooBusy) as caught:
            await session.publish_presence(availability=3500, note="refused")
        assert caught.value.retry_after == 10.0
        assert caught.value.reason == SERVER_TOO_BUSY
        assert "store write took 5 s" in caught.value.message
        # the refused request changed nothing: memory, the store, the registration
        assert user.states.note == "before"
        assert ep.expires_at == expires
        assert [r.note for r in store.load_presence()] == ["before"]
        assert busy_503s(slow, "store-queue-latency") == 1
        assert (
            slow.metric(
                "poolsim_rpc_duration_seconds_count",
                {"method": "PublishPresence", "code": "UNAVAILABLE"},
            )
            == 1
        )
        # the session is not signed in again on it: the same endpoint
        assert user.endpoints == [ep]
        slow.advance(10.0)  # retry-after later, requests go in again
        await session.publish_presence(availability=3500, note="after")
        assert user.states.note == "after"
    finally:
        await client.close()


async def test_too_busy_travels_as_retry_after_metadata_and_rich_details(
    slow: StandardPool,
) -> None:
    """What any gRPC client sees: UNAVAILABLE, ``retry-after-ms`` and a RetryInfo."""
    store = slow.engine.store
    assert isinstance(store, SlowStore)
    session = await slow.sign_in(2)
    store.delay = 6.0
    await session.publish_presence(availability=BUSY)
    store.delay = 0.0
    stub = pb_grpc.FrontEndStub(slow.client.channel(slow.address))
    md = (("authorization", f"Bearer {session.token}"),)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetPresence(pb.GetPresenceRequest(user_uris=[uri(3)]), metadata=md)
    err = caught.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    trailers = dict(err.trailing_metadata() or ())
    assert trailers["retry-after-ms"] == "10000"
    status = status_pb2.Status.FromString(trailers[DETAILS_KEY])
    retry = error_details_pb2.RetryInfo()
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(retry)
    assert retry.retry_delay.seconds == 10
    assert status.details[1].Unpack(info)
    assert info.reason == SERVER_TOO_BUSY
    # a new sign-in is refused too; the endpoint's own SignOut is not
    with pytest.raises(ServerTooBusy):
        await slow.sign_in(3)
    await session.sign_out()
    assert slow.engine.users_signed_in == 0


# --- flow control: the average holding time ---


def gate(pool: StandardPool) -> GatedService:
    service = pool.service
    assert isinstance(service, GatedService)
    return service


async def conversations(pool: StandardPool, session: Session, n: int) -> list[str]:
    """``n`` conversations ``session`` started (with users 5, 6, ..., signed in for it)."""
    for k in range(n):
        await pool.sign_in(5 + k)
    made = [await session.create_conversation([uri(5 + k)]) for k in range(n)]
    return [c.conversation_id for c in made]


def typing(session: Session, conversation_id: str) -> asyncio.Future[None]:
    return asyncio.ensure_future(session.set_typing(conversation_id, True))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_flow_control_holds_all_but_one_request_per_endpoint(
    gated: StandardPool, transport: str
) -> None:
    service = gate(gated)
    throttle = gated.engine.throttle
    client, session = await sign_in(gated, 1, transport)
    try:
        a, b = await conversations(gated, session, 2)
        gated.advance(1.0)  # a sample of what came before alone: nothing held long
        assert throttle.state is FlowState.NORMAL
        # normal: two calls of one endpoint may be under way together
        service.gate.clear()
        both = [typing(session, a), typing(session, b)]
        await eventually(lambda: service.inside == 2, what="two under way")
        gated.advance(7.0)  # they are held 7 s: the average goes over 6 s
        assert throttle.state is FlowState.FLOW_CONTROLLED
        assert throttle.limit == 1
        assert gated.metric("poolsim_flow_controlled_connections") == 3  # every endpoint
        assert gated.metric("poolsim_flow_control_episodes_total") == 1
        service.gate.set()
        await asyncio.gather(*both)
        # flow-controlled: the second waits at the door until the first is answered
        service.gate.clear()
        first = typing(session, a)
        await eventually(lambda: service.inside == 1, what="the first under way")
        second = typing(session, b)
        await eventually(lambda: throttle.held == 1, what="the second held")
        assert gated.metric("poolsim_flow_control_held_requests_total") == 1
        # what `poolsim run` samples of it each second, from the same exposition
        seen = wanted_figures(generate_latest(gated.registry).decode())
        assert (seen["held"], seen["flow_controlled"]) == (1.0, 3.0)
        assert seen["holding_s"] > 6.0
        await asyncio.sleep(0.05)  # a chance to break the limit, were it not enforced
        assert service.inside == 1
        assert service.entered == 3
        service.gate.set()
        await asyncio.gather(first, second)
        assert service.entered == 4
        # hysteresis: 3.5 s on average (7 + 0 over two) stays flow-controlled ...
        gated.advance(1.0)
        assert throttle.state is FlowState.FLOW_CONTROLLED
        # ... and a quiet second ends it
        gated.advance(1.0)
        assert throttle.state is FlowState.NORMAL
        assert throttle.limit == 20
        assert gated.metric("poolsim_flow_controlled_connections") == 0
    finally:
        service.gate.set()
        await client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_request_held_over_a_minute_is_answered_too_busy(
    gated: StandardPool, transport: str
) -> None:
    service = gate(gated)
    throttle = gated.engine.throttle
    client, session = await sign_in(gated, 2, transport)
    try:
        a, b = await conversations(gated, session, 2)
        gated.advance(1.0)
        service.gate.clear()
        first = typing(session, a)
        await eventually(lambda: service.inside == 1, what="the first under way")
        gated.advance(7.0)
        assert throttle.state is FlowState.FLOW_CONTROLLED
        second = typing(session, b)
        await eventually(lambda: throttle.held == 1, what="the second held")
        gated.advance(59.0)
        await asyncio.sleep(0.05)
        assert not second.done()
        gated.advance(1.0)
        with pytest.raises(ServerTooBusy) as caught:
            await second
        assert caught.value.reason == HELD_TOO_LONG
        assert caught.value.retry_after == 10.0
        assert busy_503s(gated, "held-too-long") == 1
        assert service.entered == 1  # never run
        service.gate.set()
        await first
    finally:
        service.gate.set()
        await client.close()


class _GatedWrites:
    """A Session handler's context whose writes wait for ``gate`` while it is closed (a
    front end slow to send what it answered)."""

    def __init__(self, context: Any, gate: asyncio.Event) -> None:
        self._context = context
        self._gate = gate

    async def write(self, data: bytes) -> None:
        await self._gate.wait()
        await self._context.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


@pytest.fixture
def write_gate(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Open by default; closed, every Session stream's next write waits for it."""
    gate = asyncio.Event()
    gate.set()

    class Stream(SessionStream):
        def __init__(self, servicer: Any, ep: Endpoint, token: str, context: Any) -> None:
            super().__init__(servicer, ep, token, _GatedWrites(context, gate))

    monkeypatch.setattr(frontend, "SessionStream", Stream)
    return gate


async def test_a_session_call_is_held_until_its_reply_is_written(
    gated: StandardPool, write_gate: asyncio.Event
) -> None:
    """On a Session stream a call's holding time runs until the write carrying its reply is
    done, not only while its handler runs: a front end too busy to send its answers goes into
    flow control as Lync's does, and an endpoint's unsent answers count against its limit."""
    throttle = gated.engine.throttle
    client, session = await sign_in(gated, 3, "session")
    try:
        a, b = await conversations(gated, session, 2)
        # the set-up's last reply may still be being written (a call is under way until then)
        await eventually(lambda: throttle.in_flight == 0, what="the set-up's replies written")
        gated.advance(1.0)
        assert throttle.state is FlowState.NORMAL
        write_gate.clear()
        first = typing(session, a)  # runs at once; its reply waits to be written
        await eventually(lambda: throttle.in_flight == 1, what="the first answered, unsent")
        gated.advance(7.0)
        assert throttle.state is FlowState.FLOW_CONTROLLED
        second = typing(session, b)
        await eventually(lambda: throttle.held == 1, what="the second held at the door")
        assert not first.done()
        write_gate.set()
        await asyncio.gather(first, second)
        await eventually(lambda: throttle.in_flight == 0, what="both written")
        assert [ep.outstanding for ep in gated.engine.registrar] == [0] * len(
            gated.engine.registrar
        )
        gated.advance(1.0)  # 7 s and the second's 0 s: still over the 3 s release ...
        gated.advance(1.0)  # ... then a quiet second ends it
        assert throttle.state is FlowState.NORMAL
    finally:
        write_gate.set()
        await client.close()


async def test_the_front_ends_loop_lag_reaches_its_throttle(gated: StandardPool) -> None:
    """The loop blocked longer than the timer task ever sleeps: its wake-up is late by at least
    the difference, and the throttle's current sample holds it (requests that came meanwhile
    waited that long before a handler saw them)."""
    throttle = gated.engine.throttle
    time.sleep(TICK_MAX + 0.3)  # noqa: ASYNC251  # blocks the loop, as a saturated backlog does
    await eventually(lambda: throttle.lag >= 0.3)
