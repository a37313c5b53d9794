"""After fuzzing: the pool is alive and every fuzzed user still works normally.

``verify_users`` is what a user and a Workgroup watcher do on a normal day: sign in, publish,
poll, watch on an Events stream, contacts, a two-party conversation; and what an operator
reads (pool status, every call detail record). Any error here means the fuzzer left a trace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pool.client import AdminClient, PoolClient, Session
from pool.privacy import AccessLevel
from tests.fuzz.fuzzer import DOMAIN, PREFIX

WATCHER = f"sip:{PREFIX}watch0@{DOMAIN}"
WAIT = 60.0


async def serving(addresses: Sequence[str]) -> list[str]:
    """The addresses whose health service does not say SERVING."""
    down = []
    for address in addresses:
        async with grpc.aio.insecure_channel(address) as ch:
            try:
                reply = await health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=10
                )
                if reply.status != health_pb2.HealthCheckResponse.SERVING:
                    down.append(address)
            except grpc.aio.AioRpcError:
                down.append(address)
    return down


async def _watch(watcher: Session, users: set[str], seen: asyncio.Event) -> None:
    waiting = set(users)
    async for event in watcher.events():
        if event.WhichOneof("kind") == "presence":
            p = event.presence.presence
            if p.availability == 6500:
                waiting.discard(p.user_uri)
            if not waiting:
                seen.set()
                return


async def verify_users(
    addresses: Sequence[str], admin_token: str, users: Sequence[str], password: str
) -> None:
    """Raise (a PoolError, an AssertionError or a timeout) if any fuzzed user does not work."""
    async with PoolClient(addresses[0]) as client:
        watcher = await client.sign_in(WATCHER, password, "verify")
        sessions = [await client.sign_in(u, password, "verify") for u in users]
        for s in sessions:
            await s.reset_presence()
            await s.add_contact(WATCHER, AccessLevel.WORKGROUP)
        await watcher.subscribe(list(users))
        seen = asyncio.Event()
        watching = asyncio.create_task(_watch(watcher, set(users), seen))
        try:
            await asyncio.sleep(0.2)  # the stream is open before the changes it must see
            for s in sessions:
                presence = await s.publish_presence(6500, note="verified")
                assert presence.availability == 6500, (s.user_uri, presence)
            await asyncio.wait_for(seen.wait(), WAIT)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        views = await watcher.get_presence(list(users))
        assert [(v.user_uri, v.availability) for v in views] == [(u, 6500) for u in users], views
        for s in sessions:
            assert any(c.user_uri == WATCHER for c in await s.list_contacts())
        a, b = sessions[0], sessions[1]
        await b.add_contact(a.user_uri, AccessLevel.WORKGROUP)  # whatever the fuzzer set
        conv = await a.create_conversation([b.user_uri], first_message="after the fuzzing")
        await b.accept(conv.conversation_id)
        await a.send_message(conv.conversation_id, "still works")
        for s in (*sessions, watcher):
            await s.sign_out()
    async with grpc.aio.insecure_channel(addresses[0]) as channel:
        admin = AdminClient(channel, admin_token)
        status = await admin.status()
        assert status.front_ends, status
        records = await admin.call_detail_records()
        assert records
        assert all(r.WhichOneof("record") for r in records)
