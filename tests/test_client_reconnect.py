"""PoolClient across a pool's front ends: sign-in moves on from a dead front end, a Session signs
in again by itself when its front end dies or its user's home moves, and the Enterprise admin
calls. Fake front ends (grpc.aio servers on loopback port 0) play the pool's part; the real
Standard front end stands in for a user's new home where that is enough."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

from pool import errors
from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import admin_pb2_grpc as apb_grpc
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool._proto.poolsim.v1 import frontend_pb2_grpc as pb_grpc
from pool.api import convert
from pool.api.status import HOME_ADDRESS_KEY
from pool.client import PoolClient, Session
from tests.conftest import PASSWORD, StandardPool, eventually, uri

WITHIN = 5.0  # seconds an iteration may take before a test fails (it takes milliseconds)
QUORUM_LOST = "pool has lost quorum: 1 of 3 front ends running, 2 needed"

# One step of a scripted Events stream: an event to send, "end" (close the stream) or "die"
# (the front end goes down: the stream and every later call answer UNAVAILABLE).
Step = pb.Event | str


def presence_event(note: str) -> pb.Event:
    event = pb.Event()
    event.presence.presence.note = note
    return event


def signed_out_event(reason: str) -> pb.Event:
    event = pb.Event()
    event.signed_out.reason = convert.end_reason(reason)
    return event


class FakeFrontEnd(pb_grpc.FrontEndServicer):
    """A front end of an Enterprise pool, as far as the client can tell."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.address = ""
        self.sign_ins: list[pb.SignInRequest] = []
        self.tokens: set[str] = set()  # valid here
        self.moved: dict[str, str] = {}  # token -> the new home of its user
        self.redirect_to = ""  # SignIn redirects there when set
        self.down = ""  # every call answers UNAVAILABLE with this message when set
        self.refused = 0  # sign-ins answered UNAVAILABLE because down
        self.calls: list[tuple[str, str]] = []  # (method, token) that got past the checks
        self.streams: list[list[Step]] = []  # scripts of the next Events streams, in order
        self.hold = 0  # GetPresence: wait for this many calls, then go down and fail them all
        self._held = 0
        self._release = asyncio.Event()

    async def _check(self, context: Any, method: str) -> str:
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, self.down)
        md = dict(context.invocation_metadata())
        token = str(md.get("authorization", "")).removeprefix("Bearer ")
        home = self.moved.get(token)
        if home:
            context.set_trailing_metadata(((HOME_ADDRESS_KEY, home),))
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"home moved to {home}")
        if token not in self.tokens:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown token: sign in")
        self.calls.append((method, token))
        return token

    async def SignIn(self, request: pb.SignInRequest, context: Any) -> pb.SignInResponse:
        if self.down:
            self.refused += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, self.down)
        self.sign_ins.append(request)
        if self.redirect_to:
            context.set_trailing_metadata(((HOME_ADDRESS_KEY, self.redirect_to),))
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "homed elsewhere")
        token = f"{self.name}-token-{len(self.sign_ins)}"
        self.tokens.add(token)
        return pb.SignInResponse(
            token=token,
            endpoint_id=f"{self.name}-ep-{len(self.sign_ins)}",
            front_end_id=self.name,
            routing_group=7,
            home_address=self.address,
        )

    async def SignOut(self, request: pb.SignOutRequest, context: Any) -> pb.SignOutResponse:
        self.tokens.discard(await self._check(context, "SignOut"))
        return pb.SignOutResponse()

    async def GetPresence(
        self, request: pb.GetPresenceRequest, context: Any
    ) -> pb.GetPresenceResponse:
        await self._check(context, "GetPresence")
        if self.hold:
            self._held += 1
            if self._held >= self.hold:
                self.down = "front end stopping"
                self._release.set()
            await self._release.wait()
            await context.abort(grpc.StatusCode.UNAVAILABLE, self.down)
        return pb.GetPresenceResponse(
            presences=[
                pb.Presence(user_uri=u, availability=3500, note=self.name)
                for u in request.user_uris
            ]
        )

    async def Events(self, request: pb.EventsRequest, context: Any) -> AsyncIterator[pb.Event]:
        await self._check(context, "Events")
        for step in self.streams.pop(0) if self.streams else []:
            if step == "end":
                return
            if step == "die":
                self.down = "front end crashed"
                await context.abort(grpc.StatusCode.UNAVAILABLE, self.down)
            assert isinstance(step, pb.Event)
            yield step
        await asyncio.Event().wait()  # open until the client goes


class FakeAdmin(apb_grpc.PoolAdminServicer):
    """Records the Enterprise admin requests; "fe9" does not exist."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.tokens: list[str] = []

    async def _record(self, request: Any, context: Any) -> apb.PoolStatus:
        self.requests.append(request)
        self.tokens.append(str(dict(context.invocation_metadata()).get("authorization")))
        if getattr(request, "id", "") == "fe9":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no front end fe9")
        return apb.PoolStatus(edition=apb.EDITION_ENTERPRISE, pool_name="pool01")

    async def StopFrontEnd(
        self, request: apb.StopFrontEndRequest, context: Any
    ) -> apb.StopFrontEndResponse:
        return apb.StopFrontEndResponse(status=await self._record(request, context))

    async def StartFrontEnd(
        self, request: apb.StartFrontEndRequest, context: Any
    ) -> apb.StartFrontEndResponse:
        return apb.StartFrontEndResponse(status=await self._record(request, context))

    async def ResetPoolRegistrarState(
        self, request: apb.ResetPoolRegistrarStateRequest, context: Any
    ) -> apb.ResetPoolRegistrarStateResponse:
        status = await self._record(request, context)
        return apb.ResetPoolRegistrarStateResponse(reloaded_groups=[3, 5], status=status)


class Pool:
    """Fake front ends, each on its own server, started and stopped together."""

    def __init__(self) -> None:
        self.servers: dict[str, grpc.aio.Server] = {}

    async def front_end(self, name: str) -> FakeFrontEnd:
        servicer = FakeFrontEnd(name)  # type: ignore[abstract]  # the calls a test needs
        server = grpc.aio.server()
        pb_grpc.add_FrontEndServicer_to_server(servicer, server)
        servicer.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
        await server.start()
        self.servers[name] = server
        return servicer

    async def crash(self, name: str) -> None:
        await self.servers.pop(name).stop(0)

    async def close(self) -> None:
        for server in self.servers.values():
            await server.stop(0)


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    fakes = Pool()
    try:
        yield fakes
    finally:
        await fakes.close()


@pytest.fixture
def dead_address() -> Iterator[str]:
    """A loopback port that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


async def collect(session: Session, count: int, reconnect: bool | None = None) -> list[pb.Event]:
    """The first ``count`` events (fewer if the stream ends first)."""
    got: list[pb.Event] = []
    async with asyncio.timeout(WITHIN), contextlib.aclosing(session.events(reconnect)) as events:
        async for event in events:
            got.append(event)
            if len(got) == count:
                break
    return got


# --- the admin calls ---


async def test_admin_calls_send_what_was_asked() -> None:
    admin = FakeAdmin()  # type: ignore[abstract]  # the Enterprise calls only
    server = grpc.aio.server()
    apb_grpc.add_PoolAdminServicer_to_server(admin, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with PoolClient(f"127.0.0.1:{port}") as client:
            ops = client.admin("admin-secret")
            status = await ops.stop_front_end("fe2")
            assert (status.edition, status.pool_name) == (apb.EDITION_ENTERPRISE, "pool01")
            await ops.stop_front_end("fe3", mode="crash")
            assert (await ops.start_front_end("fe2")).pool_name == "pool01"
            reset = await ops.reset_pool_registrar_state("quorum-loss-recovery")
            assert list(reset.reloaded_groups) == [3, 5]
            assert reset.status.pool_name == "pool01"
            await ops.reset_pool_registrar_state("machine-state-removed", "fe3")
            with pytest.raises(ValueError, match="stop mode"):
                await ops.stop_front_end("fe2", mode="pull-the-plug")
            with pytest.raises(ValueError, match="reset type"):
                await ops.reset_pool_registrar_state("reboot")
            with pytest.raises(errors.NotFound, match="fe9"):
                await ops.start_front_end("fe9")
    finally:
        await server.stop(0)

    assert admin.requests == [
        apb.StopFrontEndRequest(id="fe2", mode=apb.STOP_MODE_DRAIN),
        apb.StopFrontEndRequest(id="fe3", mode=apb.STOP_MODE_CRASH),
        apb.StartFrontEndRequest(id="fe2"),
        apb.ResetPoolRegistrarStateRequest(reset_type=apb.RESET_TYPE_QUORUM_LOSS_RECOVERY),
        apb.ResetPoolRegistrarStateRequest(
            reset_type=apb.RESET_TYPE_MACHINE_STATE_REMOVED, front_end_id="fe3"
        ),
        apb.StartFrontEndRequest(id="fe9"),
    ]
    assert set(admin.tokens) == {"Bearer admin-secret"}


async def test_every_reset_type_has_its_value() -> None:
    admin = FakeAdmin()  # type: ignore[abstract]  # the Enterprise calls only
    server = grpc.aio.server()
    apb_grpc.add_PoolAdminServicer_to_server(admin, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with PoolClient(f"127.0.0.1:{port}") as client:
            ops = client.admin("admin-secret")
            for name in ("service-reset", "quorum-loss-recovery", "full-reset"):
                await ops.reset_pool_registrar_state(name)
    finally:
        await server.stop(0)
    assert [r.reset_type for r in admin.requests] == [
        apb.RESET_TYPE_SERVICE_RESET,
        apb.RESET_TYPE_QUORUM_LOSS_RECOVERY,
        apb.RESET_TYPE_FULL_RESET,
    ]


# --- sign-in across front ends ---


def test_a_client_takes_one_address_or_several(dead_address: str) -> None:
    assert PoolClient("127.0.0.1:1").addresses == ("127.0.0.1:1",)
    client = PoolClient([dead_address, "127.0.0.1:2", dead_address])
    assert client.address == dead_address
    assert client.addresses == (dead_address, "127.0.0.1:2")
    with pytest.raises(ValueError, match="at least one"):
        PoolClient([])


async def test_sign_in_skips_a_dead_front_end(standard: StandardPool, dead_address: str) -> None:
    async with PoolClient([dead_address, standard.address]) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        assert client.address == dead_address
        assert session.address == standard.address
        assert (await session.get_presence([uri(0)]))[0].availability == 3500
        assert session.reconnections == 0


async def test_sign_in_follows_a_redirect_from_the_next_front_end(
    pool: Pool, dead_address: str
) -> None:
    a, home = await pool.front_end("fe1"), await pool.front_end("fe2")
    a.redirect_to = home.address
    async with PoolClient([dead_address, a.address]) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        assert (session.address, session.front_end_id) == (home.address, "fe2")
        assert client.addresses == (dead_address, a.address, home.address)  # learned


async def test_sign_in_raises_what_a_front_end_said_over_a_connection_failure(
    pool: Pool, dead_address: str
) -> None:
    a = await pool.front_end("fe1")
    a.down = QUORUM_LOST
    async with PoolClient([dead_address, a.address]) as client:
        with pytest.raises(errors.Unavailable, match="lost quorum"):
            await client.sign_in(uri(0), PASSWORD)


# --- a session signs in again ---


async def test_a_redirect_on_a_call_signs_in_at_the_new_home(
    pool: Pool, standard: StandardPool
) -> None:
    a = await pool.front_end("fe1")
    async with PoolClient(a.address) as client:
        session = await client.sign_in(uri(0), PASSWORD, "desktop")
        old_token = session.token
        a.moved[old_token] = standard.address  # the routing group moved
        presence = await session.get_presence([uri(0)])
        assert presence[0].availability == 3500  # the real front end answered the retry
        assert session.reconnections == 1
        assert session.address == standard.address
        assert session.token != old_token
        assert session.endpoint_id != "fe1-ep-1"
        assert client.addresses == (a.address, standard.address)
        assert a.calls == []  # the one call there was refused
        status = await standard.client.admin(standard.admin_token).status()
        assert status.users_signed_in == 1


async def test_a_dead_front_end_is_left_for_another(pool: Pool) -> None:
    a, b = await pool.front_end("fe1"), await pool.front_end("fe2")
    async with PoolClient([a.address, b.address]) as client:
        session = await client.sign_in(uri(0), PASSWORD, "phone")
        assert session.front_end_id == "fe1"
        await pool.crash("fe1")
        presence = await session.get_presence([uri(1)])
        assert presence[0].note == "fe2"
        assert (session.address, session.front_end_id, session.reconnections) == (
            b.address,
            "fe2",
            1,
        )
        assert session.token == "fe2-token-1"
        assert [(r.user_uri, r.password, r.device) for r in b.sign_ins] == [
            (uri(0), PASSWORD, "phone")
        ]


async def test_concurrent_failures_reconnect_once(pool: Pool) -> None:
    a, b = await pool.front_end("fe1"), await pool.front_end("fe2")
    async with PoolClient([a.address, b.address]) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        a.hold = 5  # the five calls all fail together, once all five have arrived
        results = await asyncio.gather(*(session.get_presence([uri(i)]) for i in range(5)))
        assert [r[0].note for r in results] == ["fe2"] * 5
        assert session.reconnections == 1
        assert len(b.sign_ins) == 1
        assert len(a.sign_ins) == 1  # and one refused (fe1 was down by then)
        assert [m for m, _ in b.calls] == ["GetPresence"] * 5


async def test_a_failed_reconnect_raises_the_pools_reason(pool: Pool, dead_address: str) -> None:
    a, b = await pool.front_end("fe1"), await pool.front_end("fe2")
    async with PoolClient([a.address, dead_address, b.address]) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        await pool.crash("fe1")
        b.down = QUORUM_LOST
        with pytest.raises(errors.Unavailable, match="lost quorum"):
            await session.get_presence([uri(0)])
        assert session.reconnections == 0
        assert session.front_end_id == "fe1"


async def test_unauthenticated_does_not_reconnect(pool: Pool) -> None:
    a, b = await pool.front_end("fe1"), await pool.front_end("fe2")
    async with PoolClient([a.address, b.address]) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        a.tokens.clear()  # the token is no longer good there
        with pytest.raises(errors.Unauthenticated):
            await session.get_presence([uri(0)])
        assert session.reconnections == 0
        assert (len(a.sign_ins), len(b.sign_ins)) == (1, 0)


async def test_a_signed_out_session_does_not_reconnect(pool: Pool) -> None:
    a, b = await pool.front_end("fe1"), await pool.front_end("fe2")
    async with PoolClient([a.address, b.address]) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        await session.sign_out()
        assert not session.auto_reconnect
        a.down = "front end stopping"
        with pytest.raises(errors.Unavailable, match="stopping"):
            await session.get_presence([uri(0)])
        with pytest.raises(errors.Unavailable, match="stopping"):
            await collect(session, 1, reconnect=True)
        assert session.reconnections == 0
        assert (len(a.sign_ins), len(b.sign_ins)) == (1, 0)


async def test_a_client_without_reconnect_raises_the_redirect(pool: Pool) -> None:
    a, b = await pool.front_end("fe1"), await pool.front_end("fe2")
    async with PoolClient(a.address, reconnect=False) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        a.moved[session.token] = b.address
        with pytest.raises(errors.Redirect) as info:
            await session.get_presence([uri(0)])
        assert info.value.home_address == b.address
        assert session.reconnections == 0
        a.redirect_to = b.address
        await session.reconnect()  # by hand
        assert (session.address, session.reconnections) == (b.address, 1)
        assert (await session.get_presence([uri(0)]))[0].note == "fe2"


# --- the event stream goes on ---


async def test_events_go_on_after_the_home_server_changed(pool: Pool) -> None:
    a, b = await pool.front_end("fe1"), await pool.front_end("fe2")
    async with PoolClient(a.address) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        a.redirect_to = b.address  # the user's routing group moved to fe2
        a.streams = [[presence_event("a1"), signed_out_event("home-server-changed"), "end"]]
        b.streams = [[presence_event("b1")]]
        events = await collect(session, 3)
        assert [e.WhichOneof("kind") for e in events] == ["presence", "signed_out", "presence"]
        assert (events[0].presence.presence.note, events[2].presence.presence.note) == (
            "a1",
            "b1",
        )
        assert (session.address, session.front_end_id, session.reconnections) == (
            b.address,
            "fe2",
            1,
        )
        assert (len(a.sign_ins), len(b.sign_ins)) == (2, 1)  # one redirected to fe2
        assert b.calls == [("Events", session.token)]


async def test_events_go_on_after_the_stream_dies(pool: Pool) -> None:
    a, b = await pool.front_end("fe1"), await pool.front_end("fe2")
    async with PoolClient([a.address, b.address]) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        a.streams = [[presence_event("a1"), "die"]]
        b.streams = [[presence_event("b1")]]
        events = await collect(session, 2)
        assert [e.presence.presence.note for e in events] == ["a1", "b1"]
        assert (session.address, session.reconnections) == (b.address, 1)


async def test_events_without_reconnect_end_as_before(pool: Pool) -> None:
    a, b = await pool.front_end("fe1"), await pool.front_end("fe2")
    async with PoolClient([a.address, b.address]) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        a.streams = [
            [presence_event("a1"), signed_out_event("home-server-changed"), "end"],
            [presence_event("a2"), "die"],
        ]
        events = await collect(session, 10, reconnect=False)
        assert [e.WhichOneof("kind") for e in events] == ["presence", "signed_out"]
        with pytest.raises(errors.Unavailable, match="crashed"):
            await collect(session, 10, reconnect=False)
        assert session.reconnections == 0
        assert len(b.sign_ins) == 0


async def test_events_end_after_other_sign_outs(pool: Pool) -> None:
    a = await pool.front_end("fe1")
    async with PoolClient(a.address) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        a.streams = [[signed_out_event("registration-expired"), "end"]]
        events = await collect(session, 10)
        assert [e.signed_out.reason for e in events] == [pb.END_REASON_REGISTRATION_EXPIRED]
        assert session.reconnections == 0


async def test_events_wait_out_a_fail_over(pool: Pool) -> None:
    """No front end takes the sign-in for a while (the pool is promoting a secondary): the
    stream keeps trying, then goes on."""
    a, b = await pool.front_end("fe1"), await pool.front_end("fe2")
    async with PoolClient([a.address, b.address]) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        a.streams = [[presence_event("a1"), "die"]]
        b.down = "routing group 7 is being promoted"
        b.streams = [[presence_event("b1")]]
        got: list[pb.Event] = []

        async def read() -> None:
            async with contextlib.aclosing(session.events()) as events:
                async for event in events:
                    got.append(event)
                    if len(got) == 2:
                        return

        reader = asyncio.create_task(read())
        await eventually(lambda: b.refused >= 2, what="two rounds of sign-ins refused")
        assert got[0].presence.presence.note == "a1"
        b.down = ""  # the fail-over is over
        async with asyncio.timeout(WITHIN):
            await reader
        assert [e.presence.presence.note for e in got] == ["a1", "b1"]
        assert session.reconnections == 1


async def test_events_raise_when_signing_in_again_fails(pool: Pool) -> None:
    a = await pool.front_end("fe1")
    async with PoolClient(a.address, stream_reconnect_window=0.3) as client:
        session = await client.sign_in(uri(0), PASSWORD)
        a.streams = [[presence_event("a1"), "die"]]
        got: list[pb.Event] = []

        async def read() -> None:
            async with asyncio.timeout(WITHIN):
                async for event in session.events():
                    got.append(event)

        with pytest.raises(errors.Unavailable, match="crashed"):
            await read()
        assert [e.presence.presence.note for e in got] == ["a1"]
        assert session.reconnections == 0
