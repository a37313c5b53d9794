"""Two-party IM, escalation to a conference, and call detail records through the API."""

from __future__ import annotations

from typing import Any

from pool._proto.poolsim.v1 import frontend_pb2 as pb
from pool.client import AdminClient
from tests.conftest import uri
from tests.contract.helpers import inbox


async def test_two_party_im_in_order_with_typing(pool: Any) -> None:
    alice = await pool.sign_in(0)
    bob = await pool.sign_in(1)
    async with inbox(bob) as bob_box, inbox(alice) as alice_box:
        conv = await alice.create_conversation([uri(1)], subject="lunch", first_message="hi bob")
        assert conv.sequence == 1
        inv = (await bob_box.next("invitation")).invitation
        assert (inv.inviter, inv.first_message.body, inv.subject) == (uri(0), "hi bob", "lunch")
        accepted = await bob.accept(conv.conversation_id)
        assert sorted(accepted.participants) == [uri(0), uri(1)]
        assert (await alice_box.next("participant_joined")).participant_joined.user_uri == uri(1)
        await alice.set_typing(conv.conversation_id, True)
        assert (await bob_box.next("typing")).typing.typing is True
        sent = [await alice.send_message(conv.conversation_id, f"m{i}") for i in range(2, 12)]
        assert [s.sequence for s in sent] == list(range(2, 12))
        got = [(await bob_box.next("message")).message for _ in range(10)]
        assert [(m.sequence, m.body, m.sender) for m in got] == [
            (i, f"m{i}", uri(0)) for i in range(2, 12)
        ]
        reply = await bob.send_message(conv.conversation_id, "<b>yes</b>", "text/html")
        msg = (await alice_box.next("message")).message
        assert (msg.sequence, msg.content_type, msg.message_id) == (
            12,
            "text/html",
            reply.message_id,
        )
        await bob.leave(conv.conversation_id)
        ended = (await alice_box.next("ended")).ended
        assert ended.conversation_id == conv.conversation_id


async def test_messages_sent_before_accept_reach_the_invitee(pool: Any) -> None:
    alice = await pool.sign_in(0)
    bob = await pool.sign_in(1)
    async with inbox(bob) as box:
        conv = await alice.create_conversation([uri(1)], first_message="one")
        await alice.send_message(conv.conversation_id, "two")
        await box.next("invitation")
        await bob.accept(conv.conversation_id)
        assert (await box.next("message")).message.body == "two"


async def test_third_participant_escalates_to_conference(pool: Any) -> None:
    alice, bob, carol = [await pool.sign_in(i) for i in range(3)]
    async with inbox(alice) as a_box, inbox(bob) as b_box, inbox(carol) as c_box:
        conv = await alice.create_conversation([uri(1)], first_message="hi")
        await b_box.next("invitation")
        await bob.accept(conv.conversation_id)
        result = await alice.invite(conv.conversation_id, uri(2))
        assert result.escalated is True
        assert result.conference_uri.startswith(uri(0) + ";gruu;opaque=app:conf:chat:id:")
        for box in (a_box, b_box):
            assert (await box.next("escalated")).escalated.conference_uri == result.conference_uri
        inv = (await c_box.next("invitation")).invitation
        assert inv.conference_uri == result.conference_uri
        assert sorted(inv.participants) == [uri(0), uri(1)]
        await carol.accept(conv.conversation_id)
        await alice.send_message(conv.conversation_id, "all three")
        assert (await b_box.next("message")).message.body == "all three"
        # carol joined within 40 s of the first message: the IMMCU's buffer gives her "hi" too
        assert (await c_box.next("message")).message.body == "hi"
        assert (await c_box.next("message")).message.body == "all three"
        await pool.sign_in(3)
        again = await alice.invite(conv.conversation_id, uri(3))
        assert again.escalated is False


async def test_decline_ends_two_party_conversation(pool: Any) -> None:
    alice = await pool.sign_in(0)
    bob = await pool.sign_in(1)
    async with inbox(alice) as box:
        conv = await alice.create_conversation([uri(1)], first_message="hi")
        await bob.decline(conv.conversation_id)
        left = (await box.next("participant_left")).participant_left
        assert (left.user_uri, left.reason) == (uri(1), pb.END_REASON_DECLINED)
        assert (await box.next("ended")).ended.conversation_id == conv.conversation_id


async def test_call_detail_records_of_a_session_and_a_conference(pool: Any) -> None:
    admin = AdminClient(pool.client.channel(), pool.admin_token)
    alice, bob, carol = [await pool.sign_in(i) for i in range(3)]
    conv = await alice.create_conversation([uri(1)], first_message="1")
    await bob.accept(conv.conversation_id)
    await bob.send_message(conv.conversation_id, "2")
    await alice.invite(conv.conversation_id, uri(2))
    await carol.accept(conv.conversation_id)
    await carol.send_message(conv.conversation_id, "3")
    await carol.leave(conv.conversation_id)
    await bob.leave(conv.conversation_id)
    await carol.sign_out()
    records = await admin.call_detail_records()
    kinds = [r.WhichOneof("record") for r in records]
    session = next(r.im_session for r in records if r.WhichOneof("record") == "im_session")
    assert (session.from_uri, session.to_uri, session.response_code) == (uri(0), uri(1), 200)
    assert (session.from_message_count, session.to_message_count) == (1, 1)
    assert session.escalated_to
    conference = next(r.conference for r in records if r.WhichOneof("record") == "conference")
    assert conference.organizer == uri(0)
    joins = sorted(
        r.conference_join.user_uri for r in records if r.WhichOneof("record") == "conference_join"
    )
    assert joins == [uri(0), uri(1), uri(2)]
    counts = {
        r.conference_messages.user_uri: r.conference_messages.message_count
        for r in records
        if r.WhichOneof("record") == "conference_messages"
    }
    assert counts == {uri(0): 0, uri(1): 0, uri(2): 1}
    reg = [r.registration for r in records if r.WhichOneof("record") == "registration"]
    assert [(x.user_uri, x.deregister_reason) for x in reg] == [
        (uri(2), pb.END_REASON_CLIENT_INITIATED)
    ]
    assert kinds.index("im_session") < kinds.index("conference")
    later = await admin.call_detail_records(since=records[-1].time.seconds + 1)
    assert later == []
