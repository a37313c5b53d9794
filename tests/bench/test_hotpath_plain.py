"""The routing core's plain baseline does the job it stands for: what poolsim's engine
delivers for the same routes, it delivers too (so the ratio compares like with like)."""

from __future__ import annotations

import pytest

from bench.hotpath_core import BODY, CONTENT_TYPE, build_routes
from bench.hotpath_plain import plain_loop, plain_send, plain_table
from pool.events import MessageReceived


def test_the_plain_job_delivers_what_the_engine_delivers() -> None:
    engine, routes, conference = build_routes(2, 4)
    sender, cid, recipients = conference
    table = plain_table([*routes, conference])
    seq = engine.send_message(sender, cid, BODY, CONTENT_TYPE)[1]
    plain = plain_send(table, sender.id, cid, BODY, CONTENT_TYPE)
    got = engine.drain(recipients[0])
    assert len(got) == 1
    assert isinstance(got[0], MessageReceived)
    expected = got[0]
    assert (plain.conversation_id, plain.sender, plain.sequence, plain.message_id) == (
        expected.conversation_id,
        expected.sender,
        seq,
        expected.message_id,
    )
    queues = table.conversations[cid].queues
    assert [len(queues[r.user.id]) for r in recipients] == [1, 1, 1]
    assert len(queues[sender.user.id]) == 0  # not to the sender


def test_a_sender_outside_the_conversation_is_refused() -> None:
    _, routes, _ = build_routes(2, 2)
    table = plain_table(routes)
    outsider = routes[1][0]
    with pytest.raises(PermissionError):
        plain_send(table, outsider.id, routes[0][1], BODY, CONTENT_TYPE)


def test_the_loop_leaves_every_queue_empty() -> None:
    _, routes, _ = build_routes(3, 2)
    table = plain_table(routes)
    assert plain_loop(table, 30, BODY, CONTENT_TYPE) > 0
    assert all(not q for c in table.conversations.values() for q in c.queues.values())
    assert [c.sequence for c in table.conversations.values()] == [10, 10, 10]
