"""PoolAdmin through the API: status, provisioning, and who may call it."""

from __future__ import annotations

from typing import Any

import pytest

from pool import errors
from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool.client import AdminClient
from tests.conftest import uri


@pytest.mark.one_transport
async def test_status_shows_front_ends_groups_and_counts(pool: Any) -> None:
    admin = AdminClient(pool.client.channel(), pool.admin_token)
    await pool.sign_in(0)
    await pool.sign_in(0, device="mobile")
    status = await admin.status()
    assert status.quorum == apb.QUORUM_STATE_HAS_QUORUM
    assert status.users_provisioned == 13
    assert (status.users_signed_in, status.endpoints_signed_in) == (1, 2)
    assert len(status.routing_groups) >= 8
    assert sum(g.users for g in status.routing_groups) == 13
    assert all(f.state == apb.FRONT_END_STATE_UP for f in status.front_ends)


async def test_provision_users_is_idempotent_and_validated(pool: Any) -> None:
    admin = AdminClient(pool.client.channel(), pool.admin_token)
    first = await admin.provision_users("agent", "litware.com", 5, "secret", start_index=10)
    assert (first.created, first.already_existed) == (5, 0)
    assert (first.first_uri, first.last_uri) == (
        "sip:agent10@litware.com",
        "sip:agent14@litware.com",
    )
    again = await admin.provision_users("agent", "litware.com", 6, "secret", start_index=10)
    assert (again.created, again.already_existed) == (1, 5)
    session = await pool.client.sign_in("sip:agent15@litware.com", "secret")
    assert session.token
    with pytest.raises(errors.InvalidArgument, match="count"):
        await admin.provision_users("agent", "litware.com", 0, "secret")
    with pytest.raises(errors.InvalidArgument, match="domain"):
        await admin.provision_users("agent", "not a domain", 1, "secret")


@pytest.mark.one_transport
async def test_admin_calls_need_the_admin_token(pool: Any) -> None:
    alice = await pool.sign_in(0)
    with pytest.raises(errors.PermissionDenied, match="admin token"):
        await AdminClient(pool.client.channel(), alice.token).status()
    with pytest.raises(errors.Unauthenticated):
        await AdminClient(pool.client.channel(), "").status()
    with pytest.raises(errors.Unauthenticated):
        await AdminClient(pool.client.channel(), "x" * 40).call_detail_records()


@pytest.mark.one_transport
async def test_bulk_contacts_reach_every_owners_home_or_none_do(pool: Any) -> None:
    """Owners homed on different front ends get their lists in one call; one bad entry
    anywhere refuses the whole call before anything is written."""
    admin = AdminClient(pool.client.channel(), pool.admin_token)
    owners = [uri(i) for i in range(8)]  # spread over the pool's front ends
    entries = [(o, uri(9), 400, "Friends") for o in owners]
    assert await admin.provision_contacts(entries) == len(owners)
    for i in range(8):
        me = await pool.sign_in(i)
        assert [c.user_uri for c in await me.list_contacts()] == [uri(9)]
    bad = [(o, uri(8), 400, "Friends") for o in owners[1:]] + [
        (uri(0), "sip:nobody@x.com", 400, "")
    ]
    with pytest.raises(errors.NotFound, match="nobody"):
        await admin.provision_contacts(bad)
    for i in range(8):
        me = await pool.sign_in(i)
        assert [c.user_uri for c in await me.list_contacts()] == [uri(9)]  # nothing written
