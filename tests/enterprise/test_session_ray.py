"""The Session stream on an Enterprise pool (a real 3-node Ray cluster): a drained front end's
endpoints see their streams end with the status a unary call gets, sign in again at the new
home and go on; a crash moves them the same way; calls across nodes are answered on the
stream as unary calls are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool.client import Session
from tests.conftest import eventually
from tests.contract.helpers import inbox
from tests.ray_pool import RayPool, start_enterprise

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[RayPool]:
    p = await start_enterprise(tmp_path, users=12, backup_interval=3600.0)
    p.client.transport = "session"
    try:
        yield p
    finally:
        await p.close()


async def _up(pool: RayPool) -> dict[str, str]:
    status = await pool.client.admin(pool.admin_token).status()
    return {f.id: f.address for f in status.front_ends if f.state == apb.FRONT_END_STATE_UP}


@pytest.mark.parametrize("mode", ["drain", "crash"])
async def test_session_endpoints_follow_their_users_home(pool: RayPool, mode: str) -> None:
    sessions = [await pool.sign_in(i) for i in range(12)]
    assert all(s.stream is not None for s in sessions)
    up = await _up(pool)
    victim = next(fe for fe, address in up.items() if address != pool.client.address)
    moved = [s for s in sessions if s.front_end_id == victim]
    stay = next(s for s in sessions if s.front_end_id != victim)
    assert moved
    for s in moved:
        await s.publish_presence(3500, note="before")
    # a message across nodes, answered on the stream
    conv = await stay.create_conversation([moved[0].user_uri], first_message="across")
    assert conv.conversation_id
    await pool.client.admin(pool.admin_token).stop_front_end(victim, mode=mode)

    async def served(s: Session) -> bool:
        try:
            view = await s.get_presence([s.user_uri])
        except Exception:  # the fail-over is under way: try again
            return False
        return view[0].note == "before" and s.front_end_id != victim

    for s in moved:  # the client signs in again at the new home by itself
        await eventually(lambda s=s: served(s), deadline=30, what=f"{s.user_uri} served again")
        assert s.reconnections >= 1
        assert s.stream is not None
    # the moved endpoint's new stream carries its events (after a crash, the invitation still
    # unanswered is delivered again to the new endpoint first)
    async with inbox(moved[0]) as box:
        await stay.create_conversation([moved[0].user_uri], first_message="after")
        bodies = [(await box.next("invitation")).invitation.first_message.body]
        if bodies[0] == "across":
            bodies.append((await box.next("invitation")).invitation.first_message.body)
        assert bodies[-1] == "after"
