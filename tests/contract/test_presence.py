"""Presence, privacy, subscriptions and contacts through the public API."""

from __future__ import annotations

from typing import Any

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.privacy import AccessLevel
from tests.conftest import uri
from tests.contract.helpers import inbox


async def test_sign_in_gives_token_endpoint_and_home(pool: Any) -> None:
    alice = await pool.sign_in(0)
    assert len(alice.token) >= 22  # at least 128 bits, url-safe
    assert alice.endpoint_id.startswith("ep-")
    assert alice.address
    me = (await alice.get_presence([uri(0)]))[0]
    assert me.availability == 3500
    assert me.endpoints == 1


async def test_presence_is_offline_until_signed_in_and_after_sign_out(pool: Any) -> None:
    alice = await pool.sign_in(0)
    assert (await alice.get_presence([uri(1)]))[0].availability == 18500
    bob = await pool.sign_in(1)
    assert (await alice.get_presence([uri(1)]))[0].availability == 3500
    await bob.sign_out()
    assert (await alice.get_presence([uri(1)]))[0].availability == 18500


async def test_privacy_views_per_access_level(pool: Any) -> None:
    bob = await pool.sign_in(1)
    colleague = await pool.sign_in(0)
    workgroup = await pool.sign_in(2)
    blocked = await pool.sign_in(3)
    external = await pool.sign_in(0, domain="fabrikam.com")
    await bob.add_contact(uri(2), AccessLevel.WORKGROUP)
    await bob.add_contact(uri(3), AccessLevel.BLOCKED)
    await bob.publish_presence(9500, note="heads down")

    seen = (await colleague.get_presence([uri(1)]))[0]
    assert (seen.availability, seen.note, seen.seen_as) == (9500, "heads down", 200)
    seen = (await workgroup.get_presence([uri(1)]))[0]
    assert (seen.availability, seen.activity) == (6900, "urgent-interruptions-only")
    assert seen.seen_as == AccessLevel.WORKGROUP
    seen = (await blocked.get_presence([uri(1)]))[0]
    assert (seen.availability, seen.note, seen.activity) == (18500, "", "")
    seen = (await external.get_presence([uri(1)]))[0]
    assert (seen.availability, seen.note, seen.seen_as) == (9500, "", AccessLevel.EXTERNAL)


async def test_manual_state_and_reset(pool: Any) -> None:
    alice = await pool.sign_in(0)
    mine = await alice.publish_presence(15500, "off-work")
    assert (mine.availability, mine.activity) == (15500, "off-work")
    mine = await alice.reset_presence()
    assert mine.availability == 3500


async def test_machine_state_publication(pool: Any) -> None:
    alice = await pool.sign_in(0)
    mine = await alice.publish_presence(
        source=pb.PRESENCE_SOURCE_MACHINE, machine_state=pb.MACHINE_STATE_AWAY
    )
    assert mine.availability == 15500
    mine = await alice.publish_presence(
        source=pb.PRESENCE_SOURCE_MACHINE, machine_state=pb.MACHINE_STATE_ACTIVE
    )
    assert mine.availability == 3500


async def test_subscription_delivers_changes_with_privacy(pool: Any) -> None:
    alice = await pool.sign_in(0)
    bob = await pool.sign_in(1)
    await bob.add_contact(uri(0), AccessLevel.WORKGROUP)
    initial = await alice.subscribe([uri(1)])
    assert initial[0].availability == 3500
    async with inbox(alice) as box:
        await bob.publish_presence(9500, note="focus")
        event = await box.next("presence")
        p = event.presence.presence
        assert (p.user_uri, p.availability, p.note) == (uri(1), 6900, "focus")
        await alice.unsubscribe([uri(1)])
        await bob.publish_presence(6500)
        await bob.publish_presence(3500)
        # nothing more arrives for bob once unsubscribed: a sign-in of another watched user does
        await alice.subscribe([uri(2)])
        await pool.sign_in(2)
        event = await box.next("presence")
        assert event.presence.presence.user_uri == uri(2)


async def test_contacts_add_list_update_remove(pool: Any) -> None:
    alice = await pool.sign_in(0)
    c = await alice.add_contact(uri(1))
    assert (c.user_uri, c.access_level, c.group) == (
        uri(1),
        AccessLevel.COLLEAGUES,
        "Other Contacts",
    )
    c = await alice.add_contact(uri(0, "fabrikam.com"), group="Partners")
    assert c.access_level == AccessLevel.EXTERNAL
    c = await alice.add_contact(uri(1), AccessLevel.FRIENDS_AND_FAMILY, "Family")
    assert c.access_level == AccessLevel.FRIENDS_AND_FAMILY
    listed = await alice.list_contacts()
    assert [(x.user_uri, x.group) for x in listed] == [
        (uri(1), "Family"),
        (uri(0, "fabrikam.com"), "Partners"),
    ]
    assert await alice.remove_contact(uri(1)) == 1
    assert [x.user_uri for x in await alice.list_contacts()] == [uri(0, "fabrikam.com")]
