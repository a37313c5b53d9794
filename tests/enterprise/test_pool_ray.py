"""An Enterprise pool on a real 3-node Ray cluster: redirects, talking across front ends, a
crash under load with fail-over, pool quorum loss and routing-group quorum-loss recovery.

One front end per Ray node; each test starts its own pool on the session's shared cluster.
Waits are on conditions with generous deadlines, never on sleeps.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import urllib.request
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from enterprise.options import PoolOptions
from enterprise.pool import EnterprisePool
from pool import errors
from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.api.server import TlsFiles
from pool.cdr import RegistrationRecord
from pool.client import AdminClient, PoolClient, Session, TransportError
from pool.clock import SystemClock
from pool.config import EngineConfig
from tests.conftest import ADMIN_TOKEN, DOMAIN, PASSWORD, eventually, uri
from tests.contract.helpers import Inbox, inbox
from tests.pki import Pki, channel_credentials
from tests.ray_pool import LOCAL_SUBCHANNELS, RayPool, start_enterprise

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[RayPool]:
    # self-healing off: these tests watch what the pool does while a front end stays down
    p = await start_enterprise(tmp_path, users=12, backup_interval=3600.0, restart_delay=-1.0)
    try:
        yield p
    finally:
        await p.close()


def admin(pool: RayPool) -> AdminClient:
    return pool.client.admin(pool.admin_token)


async def homes(pool: RayPool) -> dict[str, str]:
    """Front end id -> address, of the front ends up."""
    status = await admin(pool).status()
    return {f.id: f.address for f in status.front_ends if f.state == apb.FRONT_END_STATE_UP}


async def test_sign_in_anywhere_is_redirected_home_and_talks_across_nodes(pool: RayPool) -> None:
    up = await homes(pool)
    assert len(up) == 3
    sessions = [await pool.sign_in(i) for i in range(12)]
    status = await admin(pool).status()
    primary = {g.id: g.primary for g in status.routing_groups}
    for s in sessions:
        assert s.front_end_id == primary[s.routing_group]
        assert s.address == up[s.front_end_id]
    # a client pointed at a front end that is not the user's home is sent home
    a = sessions[0]
    elsewhere = next(addr for fe, addr in up.items() if fe != a.front_end_id)
    async with PoolClient(elsewhere) as other:
        again = await other.sign_in(a.user_uri, "pw")
        assert again.front_end_id == a.front_end_id
    b = next(s for s in sessions if s.front_end_id != a.front_end_id)
    async with inbox(a) as a_box, inbox(b) as b_box:
        await _talk_across(a, b, a_box, b_box)
        await b.subscribe([a.user_uri])
        await a.publish_presence(9500, note="busy with the pool")
        seen = await b_box.next("presence")
        assert seen.presence.presence.availability == 9500
    # the pool-level series come from one front end (fe1, the lowest up), so a sum is right;
    # every front end shows its own cross-node traffic
    status = await admin(pool).status()
    scraped = {f.id: await asyncio.to_thread(_scrape, f.metrics_address) for f in status.front_ends}
    assert "poolsim_pool_front_ends_up 3.0" in scraped["fe1"]
    assert 'poolsim_pool_routing_groups{state="healthy"} 24.0' in scraped["fe1"]
    assert [fe for fe, t in scraped.items() if "poolsim_pool_front_ends_up" in t] == ["fe1"]
    text = scraped[a.front_end_id]
    assert _sample(text, "poolsim_cross_node_batch_items_count") > 0
    assert _sample(text, "poolsim_replication_seconds_count") > 0  # the note was replicated
    # the batches went over the front ends' own connections, not as Ray calls
    assert _sample(text, "poolsim_cross_node_connections_opened_total") >= 1


async def test_front_ends_asked_to_pass_messages_as_ray_calls_talk_across_nodes(
    tmp_path: Path,
) -> None:
    p = await start_enterprise(tmp_path, users=12, backup_interval=3600.0, peer_links="ray")
    try:
        sessions = [await p.sign_in(i) for i in range(12)]
        a = sessions[0]
        b = next(s for s in sessions if s.front_end_id != a.front_end_id)
        async with inbox(a) as a_box, inbox(b) as b_box:
            await _talk_across(a, b, a_box, b_box)
        status = await admin(p).status()
        for fe in status.front_ends:
            text = await asyncio.to_thread(_scrape, fe.metrics_address)
            if fe.id in (a.front_end_id, b.front_end_id):
                assert _sample(text, "poolsim_cross_node_batch_items_count") > 0
            assert "poolsim_cross_node_connections_opened" not in text  # no direct links
    finally:
        await p.close()


async def _talk_across(a: Session, b: Session, a_box: Inbox, b_box: Inbox) -> None:
    """``a`` invites ``b`` (on another front end); messages both ways, in order."""
    conv = await a.create_conversation([b.user_uri], first_message="one")
    await b_box.next("invitation")
    await b.accept(conv.conversation_id)
    await a_box.next("participant_joined")
    for text in ("two", "three", "four"):
        await a.send_message(conv.conversation_id, text)
    got = [(await b_box.next("message")).message.body for _ in range(3)]
    assert got == ["two", "three", "four"]  # order holds across nodes
    await b.send_message(conv.conversation_id, "back")
    assert (await a_box.next("message")).message.body == "back"


def _scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
        return str(reply.read().decode())


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not exported")


async def _writer(session: Session, acked: dict[str, str], stop: asyncio.Event) -> int:
    """Publish notes until told to stop; remember the last one acknowledged."""
    k = 0
    failures = 0
    while not stop.is_set():
        k += 1
        note = f"{session.user_uri} note {k}"
        try:
            await session.publish_presence(6500, note=note)
        except errors.PoolError:
            failures += 1  # the call fell in the fail-over window: not acknowledged
            await asyncio.sleep(0.05)
            continue
        acked[session.user_uri] = note
        await asyncio.sleep(0)
    return failures


async def test_a_crash_under_load_promotes_secondaries_and_loses_no_acknowledged_write(
    pool: RayPool,
) -> None:
    sessions = [await pool.sign_in(i) for i in range(12)]
    by_fe: dict[str, list[Session]] = {}
    for s in sessions:
        by_fe.setdefault(s.front_end_id, []).append(s)
    up = await homes(pool)
    admin_fe = next(fe for fe, address in up.items() if address == pool.client.address)
    # not the front end that answers admin calls: a crash ends the calls it is serving
    victim = max((fe for fe in by_fe if fe != admin_fe), key=lambda fe: len(by_fe[fe]))
    affected = by_fe[victim]
    lost = sorted(s.endpoint_id for s in affected)
    acked: dict[str, str] = {}
    stop = asyncio.Event()
    writers = [asyncio.create_task(_writer(s, acked, stop)) for s in sessions]
    # messages across nodes keep flowing too
    a = next(s for s in sessions if s.front_end_id == admin_fe)
    await eventually(lambda: len(acked) == len(sessions), what="every writer acknowledged")

    stopped = await admin(pool).stop_front_end(victim, mode="crash")
    assert any(f.id == victim for f in stopped.front_ends)

    async def failed_over() -> bool:
        status = await admin(pool).status()
        states = {f.id: f.state for f in status.front_ends}
        return states[victim] == apb.FRONT_END_STATE_DOWN and all(
            g.primary != victim for g in status.routing_groups
        )

    await eventually(failed_over, deadline=30, what=f"{victim} down and its groups promoted")
    before = dict(acked)
    await eventually(
        lambda: all(acked[s.user_uri] != before[s.user_uri] for s in affected),
        deadline=30,
        what="every affected user served again",
    )
    stop.set()
    await asyncio.gather(*writers)
    status = await admin(pool).status()
    assert int(status.details["promotions"]) >= 1
    assert {f.id: f.state for f in status.front_ends}[victim] == apb.FRONT_END_STATE_DOWN
    assert all(g.state == apb.ROUTING_GROUP_STATE_DEGRADED for g in status.routing_groups)
    for s in affected:
        assert s.reconnections >= 1
        assert s.front_end_id != victim
    # every acknowledged write is readable, from a user on a surviving front end
    views = await a.get_presence([s.user_uri for s in sessions])
    assert {v.user_uri: v.note for v in views} == acked
    # the victim never comes back (self-healing off): the pool wrote its endpoints' rows
    await eventually(
        lambda: _count(failure_records(pool), len(lost)), deadline=30, what="failure records"
    )
    records = await failure_records(pool)
    assert sorted(r.endpoint_id for r in records) == lost
    assert all(r.registrar == victim for r in records)


async def failure_records(pool: RayPool) -> list[Any]:
    """The registration rows of endpoints lost with a crashed front end."""
    stored = await pool.pool.call("call_detail_records", 0.0)
    return [
        r.record
        for r in stored
        if isinstance(r.record, RegistrationRecord)
        and r.record.deregister_reason == "front-end-failure"
    ]


async def _backup(pool: RayPool) -> None:
    handles = await pool.pool.fabric.handles_of.remote()
    await asyncio.gather(*(h.backup.remote() for h in handles.values()))


async def test_two_front_ends_crash_and_come_back_with_their_replicas(pool: RayPool) -> None:
    """Lync's runbook without a reset: crash two of three front ends (pool quorum lost, every
    group down to one replica), start them again: they bring their replicas back from their
    local stores, every group is served and healthy again, primaries are balanced, and every
    acknowledged write is there, also those never backed up."""
    sessions = [await pool.sign_in(i) for i in range(12)]
    for s in sessions:
        await s.publish_presence(9500, note=f"saved {s.user_uri}")
        await s.add_contact(uri(0, "fabrikam.com"))
    await _backup(pool)
    for s in sessions:  # acknowledged and replicated, never backed up (backups hourly)
        await s.publish_presence(12500, note=f"before crash {s.user_uri}")
    up = await homes(pool)
    survivor = next(fe for fe, address in up.items() if address == pool.client.address)
    victims = sorted(fe for fe in up if fe != survivor)
    for fe in victims:
        await admin(pool).stop_front_end(fe, mode="crash")

    async def lost() -> bool:
        status = await admin(pool).status()
        return status.quorum == apb.QUORUM_STATE_LOST and not any(
            f.state == apb.FRONT_END_STATE_UP for f in status.front_ends if f.id in victims
        )

    await eventually(lost, deadline=30, what="pool quorum lost")
    status = await admin(pool).status()
    assert "pool quorum lost: 1 of 3 front ends running" in status.quorum_detail
    on_survivor = next(s for s in sessions if s.front_end_id == survivor)
    with pytest.raises(errors.Unavailable):  # the client tries the others too: any says so
        await on_survivor.get_presence([on_survivor.user_uri])

    await admin(pool).start_front_end(victims[0])
    status = await admin(pool).status()
    assert status.quorum == apb.QUORUM_STATE_HAS_QUORUM
    assert all(g.state == apb.ROUTING_GROUP_STATE_DEGRADED for g in status.routing_groups)
    assert int(status.details["recoveries"]) == len(status.routing_groups)
    await admin(pool).start_front_end(victims[1])

    status = await admin(pool).status()
    assert all(g.state == apb.ROUTING_GROUP_STATE_HEALTHY for g in status.routing_groups)
    primaries = [f.primaries for f in status.front_ends]
    assert max(primaries) - min(primaries) <= 1, primaries
    assert int(status.details["reloads"]) == 0
    assert int(status.details["rebalances"]) >= 1
    # a new client with channels of its own: gRPC shares connections to an address across
    # a process, and those to the crashed front ends are in its reconnect backoff (up to
    # two minutes), a client matter, not the pool's
    async with PoolClient(pool.addresses, options=[LOCAL_SUBCHANNELS]) as later:
        fresh = [await later.sign_in(uri(i), PASSWORD) for i in range(12)]
        views = await fresh[0].get_presence([s.user_uri for s in sessions])
        assert {v.user_uri: v.note for v in views} == {
            s.user_uri: f"before crash {s.user_uri}" for s in sessions
        }
        for s in fresh:
            assert [c.user_uri for c in await s.list_contacts()] == [uri(0, "fabrikam.com")]


async def _count(records: Awaitable[list[Any]], n: int) -> bool:
    return len(await records) >= n


async def notes(pool: RayPool, users: int) -> list[str]:
    """Every user's note, each signed in (an offline user shows none), by a new client."""
    async with PoolClient(pool.addresses, options=[LOCAL_SUBCHANNELS]) as later:
        sessions = [await later.sign_in(uri(i), PASSWORD) for i in range(users)]
        views = await sessions[0].get_presence([uri(i) for i in range(users)])
        return [v.note for v in views]


async def test_quorum_loss_recovery_says_what_the_backup_lacked_or_keeps_the_replicas(
    pool: RayPool, tmp_path: Path
) -> None:
    """Two front ends lose their disks as well: their groups stay in quorum loss (the message
    says what would end it). QUORUM_LOSS_RECOVERY reloads the backup and reports the
    acknowledged writes the survivor held that the backup lacked; the same loss again, with
    QUORUM_LOSS_RECOVERY_FROM_REPLICAS, loses nothing."""
    sessions = [await pool.sign_in(i) for i in range(12)]
    for s in sessions:
        await s.publish_presence(3500, note=f"saved {s.user_uri}")
    await _backup(pool)
    for s in sessions:
        await s.publish_presence(12500, note=f"before crash {s.user_uri}")
    up = await homes(pool)
    survivor = next(fe for fe, address in up.items() if address == pool.client.address)
    victims = sorted(fe for fe in up if fe != survivor)

    async def crash_and_lose_disks(fes: list[str]) -> None:
        for fe in fes:
            await admin(pool).stop_front_end(fe, mode="crash")

        async def down() -> bool:
            status = await admin(pool).status()
            return all(
                f.state == apb.FRONT_END_STATE_DOWN for f in status.front_ends if f.id in fes
            )

        await eventually(down, deadline=30, what=f"{fes} down")
        for fe in fes:
            disk = tmp_path / fe

            def lost(disk: Path = disk) -> bool:
                # the killed worker may still be closing its files as Ray reports it dead: a
                # file it makes meanwhile fails one pass ("Directory not empty"), not the test
                shutil.rmtree(disk, ignore_errors=True)
                return not disk.exists()

            await eventually(lost, deadline=30, what=f"{disk} removed")
        await admin(pool).start_front_end(fes[0])

    await crash_and_lose_disks(victims)
    status = await admin(pool).status()
    assert all(g.state == apb.ROUTING_GROUP_STATE_QUORUM_LOSS for g in status.routing_groups)
    assert "start the front ends that held its replicas, or run" in status.quorum_detail

    reply = await admin(pool).reset_pool_registrar_state("quorum-loss-recovery")

    assert sorted(reply.reloaded_groups) == [g.id for g in status.routing_groups]
    assert reply.status.details["last_recovery_writes_lost"] == "12"  # the 12 notes
    assert reply.status.details["writes_lost_in_recovery"] == "12"
    assert await notes(pool, 12) == [f"saved {uri(i)}" for i in range(12)]

    await admin(pool).start_front_end(victims[1])
    async with PoolClient(pool.addresses, options=[LOCAL_SUBCHANNELS]) as later:
        fresh = [await later.sign_in(uri(i), PASSWORD) for i in range(12)]
        for s in fresh:
            await s.publish_presence(6500, note=f"after {s.user_uri}")
    await crash_and_lose_disks(victims)

    reply = await admin(pool).reset_pool_registrar_state("quorum-loss-recovery-from-replicas")

    assert list(reply.reloaded_groups) == []
    assert reply.status.details["last_recovery_writes_lost"] == "0"
    assert all(g.state != apb.ROUTING_GROUP_STATE_QUORUM_LOSS for g in reply.status.routing_groups)
    assert await notes(pool, 12) == [f"after {uri(i)}" for i in range(12)]


async def test_a_killed_front_end_restarts_by_itself_catches_up_and_gets_primaries_back(
    tmp_path: Path,
) -> None:
    """kill -9 of a front end's process: its groups fail over, Ray restarts the actor, it
    rejoins with the replicas in its local store, catches up with the writes made while it
    was down, and primaries are rebalanced; every acknowledged write is readable."""
    p = await start_enterprise(tmp_path, users=12, backup_interval=3600.0, restart_delay=0.5)
    try:
        sessions = [await p.sign_in(i) for i in range(12)]
        up = await homes(p)
        victim = next(fe for fe, address in up.items() if address != p.client.address)
        handles = await p.pool.fabric.handles_of.remote()
        pid = await handles[victim].pid.remote()
        for s in sessions:
            await s.publish_presence(3500, note=f"before {s.user_uri}")
        # a front end whose loop is blocked for 3 s (heartbeats time out after 1.5 s) is
        # busy, not dead: its heartbeats answer on their own thread
        await handles[victim].freeze_loop.remote(3.0)
        # a heartbeat answered late (a round waits 1 s; on a starved machine one answer
        # can take longer) is one missed, not three
        await handles[victim].slow_heartbeat.remote(1.3)

        async def answered_late() -> bool:
            return bool(await handles[victim].late_heartbeats_answered.remote())

        await eventually(answered_late, what="the late heartbeat")
        status = await admin(p).status()
        assert {f.id: f.state for f in status.front_ends}[victim] == apb.FRONT_END_STATE_UP
        assert status.details["promotions"] == "0"

        lost = {s.endpoint_id: s.user_uri for s in sessions if s.front_end_id == victim}
        assert lost
        metrics_at = {f.id: f.metrics_address for f in status.front_ends}[victim]
        killed_at = SystemClock().now()
        os.kill(pid, signal.SIGKILL)

        async def failed_over() -> bool:
            status = await admin(p).status()
            return all(g.primary != victim for g in status.routing_groups)

        await eventually(failed_over, deadline=30, what=f"{victim}'s groups failed over")
        for s in sessions:  # while it is down or catching up: its replicas miss these
            await s.publish_presence(6500, note=f"while down {s.user_uri}")

        async def healed() -> bool:
            status = await admin(p).status()
            states = {f.id: f.state for f in status.front_ends}
            primaries = [f.primaries for f in status.front_ends]
            return (
                states[victim] == apb.FRONT_END_STATE_UP
                and int(status.details["restarts"]) >= 1
                and all(g.state == apb.ROUTING_GROUP_STATE_HEALTHY for g in status.routing_groups)
                and max(primaries) - min(primaries) <= 1
            )

        await eventually(healed, deadline=60, what=f"{victim} restarted, caught up, rebalanced")
        status = await admin(p).status()
        assert int(status.details["catch_ups"]) >= 1
        assert int(status.details["rebalances"]) >= 1
        assert int(status.details["reloads"]) == 0
        assert await handles[victim].pid.remote() != pid  # the same actor, a new process
        # where it was: what scrapes its metrics (the run's probe and memory sampler) follows
        assert {f.id: f.metrics_address for f in status.front_ends}[victim] == metrics_at

        await eventually(
            lambda: _count(failure_records(p), len(lost)), deadline=30, what="failure records"
        )
        records = await failure_records(p)
        assert sorted(r.endpoint_id for r in records) == sorted(lost)  # once each
        assert {r.endpoint_id: r.user_uri for r in records} == lost
        assert all(r.registrar == victim and r.deregister_time >= killed_at for r in records)
        async with PoolClient(p.addresses, options=[LOCAL_SUBCHANNELS]) as later:
            fresh = [await later.sign_in(uri(i), PASSWORD) for i in range(12)]
            on_victim = [s for s in fresh if s.front_end_id == victim]
            assert on_victim  # it serves its users again
            views = await on_victim[0].get_presence([s.user_uri for s in sessions])
            assert {v.user_uri: v.note for v in views} == {
                s.user_uri: f"while down {s.user_uri}" for s in sessions
            }
    finally:
        await p.close()


async def test_drain_moves_users_and_the_front_end_rejoins(pool: RayPool) -> None:
    sessions = [await pool.sign_in(i) for i in range(12)]
    up = await homes(pool)
    victim = next(fe for fe, address in up.items() if address != pool.client.address)
    moved = [s for s in sessions if s.front_end_id == victim]
    for s in moved:
        await s.publish_presence(3500, note="before the drain")
    status = await admin(pool).stop_front_end(victim, mode="drain")
    assert {f.id: f.state for f in status.front_ends}[victim] == apb.FRONT_END_STATE_DOWN
    assert all(g.primary != victim for g in status.routing_groups)
    for s in moved:  # the client follows the redirect by itself
        view = await s.get_presence([s.user_uri])
        assert view[0].note == "before the drain"
        assert s.front_end_id != victim
    status = await admin(pool).start_front_end(victim)
    assert {f.id: f.state for f in status.front_ends}[victim] == apb.FRONT_END_STATE_UP

    async def has_replicas() -> bool:
        s = await admin(pool).status()
        return any(f.id == victim and f.secondaries > 0 for f in s.front_ends)

    await eventually(has_replicas, deadline=30, what=f"{victim} given replicas again")

    # a drain asked of the front end being drained is answered before its server closes
    address = (await homes(pool))[victim]
    async with PoolClient(address, reconnect=False, options=[LOCAL_SUBCHANNELS]) as direct:
        status = await direct.admin(pool.admin_token).stop_front_end(victim, mode="drain")
    assert {f.id: f.state for f in status.front_ends}[victim] == apb.FRONT_END_STATE_DOWN


async def test_a_conference_survives_the_crash_of_its_host(pool: RayPool) -> None:
    """The roster is replicated with the organizer's group: the new primary restores the
    conference and invites everyone back to the same conversation id. A member of a
    conference hosted elsewhere whose own front end failed stays on its roster and is rung
    when their client signs in again."""
    sessions = [await pool.sign_in(i) for i in range(12)]
    up = await homes(pool)
    admin_fe = next(fe for fe, address in up.items() if address == pool.client.address)
    victim = next(fe for fe in sorted(up) if fe != admin_fe)
    alice, dave = [s for s in sessions if s.front_end_id == victim][:2]
    bob, carol = [s for s in sessions if s.front_end_id != victim][:2]
    async with (
        inbox(alice) as a_box,
        inbox(bob) as b_box,
        inbox(carol) as c_box,
        inbox(dave) as d_box,
    ):
        conv = await alice.create_conversation([bob.user_uri, carol.user_uri], subject="plan")
        cid = conv.conversation_id
        for session, box in ((bob, b_box), (carol, c_box)):
            await box.next("invitation")
            await session.accept(cid)
        await alice.send_message(cid, "before")
        assert (await c_box.next("message")).message.body == "before"
        other = await bob.create_conversation([carol.user_uri, dave.user_uri], subject="other")
        oid = other.conversation_id
        for session, box in ((carol, c_box), (dave, d_box)):
            await box.next("invitation")
            await session.accept(oid)

        await admin(pool).stop_front_end(victim, mode="crash")

        # Dave's front end failed: he left Bob's conference, and is invited back to it
        await eventually(
            lambda: any(
                e.WhichOneof("kind") == "participant_left"
                and e.participant_left.conversation_id == oid
                and (e.participant_left.user_uri, e.participant_left.reason)
                == (dave.user_uri, pb.END_REASON_CONNECTION_LOST)
                for e in b_box.events
            ),
            deadline=30,
            what="Bob told Dave's connection was lost",
        )
        back = await d_box.next("invitation", within=30)
        assert back.invitation.conversation_id == oid
        await dave.accept(oid)

        for box in (b_box, c_box):  # told the conference broke, then invited back to it
            ended = await box.next("ended", within=30)
            assert (ended.ended.conversation_id, ended.ended.reason) == (
                cid,
                pb.END_REASON_HOST_CHANGED,
            )
            back = await box.next("invitation", within=30)
            assert back.invitation.conversation_id == cid
            assert back.invitation.conference_uri == conv.conference_uri
            assert back.invitation.subject == "plan"
        # Alice's session died with the host: her client signs in again and is rung there
        back = await a_box.next("invitation", within=30)
        assert back.invitation.conversation_id == cid
        assert alice.front_end_id != victim
        for session in (alice, bob, carol):
            await session.accept(cid)
        await bob.send_message(cid, "after")
        for box in (a_box, c_box):
            assert (await box.next("message")).message.body == "after"


async def test_before_it_is_ready_the_pool_says_what_it_waits_for(tmp_path: Path) -> None:
    """Held while users are provisioned (as ``poolsim serve --users`` does): health is
    NOT_SERVING, GetPoolStatus says starting and why, a sign-in is UNAVAILABLE naming the
    wait, not UNAUTHENTICATED; once released, all serve."""
    opts = PoolOptions(
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        engine=EngineConfig(password_iterations=1),
        restart_delay=-1.0,
    )
    pool = await EnterprisePool.start(opts, hold="provisioning 3 users")
    try:
        address = pool.addresses[0]
        async with PoolClient(address) as client:
            with pytest.raises(errors.Unavailable, match="provisioning 3 users"):
                await client.sign_in(uri(0), PASSWORD)
            status = await client.admin(ADMIN_TOKEN).status()
            assert status.details["starting"] == "provisioning 3 users"
            assert status.quorum_detail.startswith("starting, not serving yet")
            async with grpc.aio.insecure_channel(address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                reply = await health.Check(health_pb2.HealthCheckRequest())
                assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
                await pool.call("provision", "user", DOMAIN, 3, 0, PASSWORD)
                await pool.call("release")
                reply = await health.Check(health_pb2.HealthCheckRequest())
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            session = await client.sign_in(uri(0), PASSWORD)
            assert session.front_end_id
    finally:
        await pool.stop()


async def test_tls_on_every_front_end(tmp_path: Path, pki: Pki) -> None:
    """The pool serves TLS with one certificate, sent to every front end with the options;
    a sign-in at a front end that is not the user's home is redirected over TLS."""
    tls = TlsFiles(pki.server_cert, pki.server_key).load()
    p = await start_enterprise(tmp_path, users=6, tls=tls)
    try:
        credentials = channel_credentials(pki.ca)
        for address in p.addresses:
            async with PoolClient(address, credentials=credentials) as client:
                session = await client.sign_in(uri(0), PASSWORD)
                views = await session.get_presence([uri(0), uri(1)])
                assert [v.user_uri for v in views] == [uri(0), uri(1)]
        async with PoolClient(p.addresses[0]) as plaintext:
            with pytest.raises((errors.Unavailable, TransportError)):
                await plaintext.sign_in(uri(0), PASSWORD, deadline=5)
    finally:
        await p.close()


async def test_front_ends_that_come_up_after_the_start_get_their_share_of_primaries(
    tmp_path: Path,
) -> None:
    """4 front ends: the pool may start with the first 3 (the first-start table); the last
    one still ends up with its share of primaries."""
    p = await start_enterprise(tmp_path, front_ends=4, users=4)
    try:
        status = await admin(p).status()
        primaries = [f.primaries for f in status.front_ends]
        assert len(primaries) == 4
        assert sum(primaries) == 32
        assert max(primaries) - min(primaries) <= 1
    finally:
        await p.close()
