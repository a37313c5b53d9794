"""Three front ends in one process, over a transport that calls ``FrontEndNode.handle`` directly
(no Ray): the orders in which routing tables and link batches can arrive when a routing group
moves, and what a conference's members see. The pool-level behaviour is tested on a real Ray
cluster in test_pool_ray.py; these pin down the races, which Ray cannot be made to order."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from enterprise.node import FrontEndNode, Item
from enterprise.routing_table import RoutingTable
from pool.config import EngineConfig
from pool.directory import Directory, hash_password
from pool.events import ConversationEnded, Event, Invitation
from pool.registrar import Endpoint
from pool.store import UserRow

FES = ("A", "B", "C")
SETTLE_TURNS = 10_000


class Direct:
    """The transport: a batch is answered by the destination node on this loop (what
    ``FrontEndActor.exchange`` does, without Ray)."""

    def __init__(self) -> None:
        self.nodes: dict[str, FrontEndNode] = {}

    async def exchange(self, dst: str, src: str, items: list[Item]) -> list[Any]:
        await asyncio.sleep(0)
        return await self.nodes[dst].answer(src, items)

    def post(self, dst: str, src: str, items: list[Item], on_reply: Any) -> bool:
        return False  # every batch is exchanged, one in flight per link

    async def fabric(self, method: str, *args: Any) -> Any:
        raise AssertionError(f"no fabric here ({method})")

    async def front_end(self, dst: str, method: str, *args: Any) -> Any:
        raise AssertionError(f"no front-end calls here ({method})")


class Pool:
    def __init__(self, user_groups: list[int]) -> None:
        self.transport = Direct()
        rows = [
            UserRow(i + 1, uri(i + 1), f"u{i + 1}", g, b"s", hash_password("pw", b"s", 1), 1)
            for i, g in enumerate(user_groups)
        ]
        for fe in FES:
            config = dataclasses.replace(EngineConfig(), front_end_id=fe, routing_groups=3)
            directory = Directory(config.routing_groups, config.password_iterations)
            node = FrontEndNode(fe, config, directory, self.transport)
            node.load_users(rows)
            self.transport.nodes[fe] = node

    def __getitem__(self, fe: str) -> FrontEndNode:
        return self.transport.nodes[fe]

    def sign_in(self, fe: str, user: int) -> Endpoint:
        engine = self[fe].engine
        return engine.sign_in(engine.directory.by_id(user), "desktop")

    async def settle(self) -> None:
        """Until no link has a batch in flight or waiting."""
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)
            nodes = self.transport.nodes.values()
            if not any(n.tasks for n in nodes) and not any(
                link.busy or link.items
                for n in nodes
                for link in (*n.links.values(), *n.repl_links.values())
            ):
                return
        raise AssertionError("the links never went quiet")

    async def push(self, table: RoutingTable, *order: str) -> None:
        """The fabric's table push, reaching the front ends in ``order``, the links settling
        in between (the order a gather of actor calls may take)."""
        for fe in order:
            self[fe].set_table(table, "")
            await self.settle()


def uri(user: int) -> str:
    return f"sip:u{user}@x.com"


def table(version: int, homes: list[str], secondaries: list[list[str]]) -> RoutingTable:
    return RoutingTable(
        version,
        tuple(homes),
        tuple(tuple(s) for s in secondaries),
        tuple("" for _ in homes),
        {fe: fe for fe in FES},
    )


def seen(ep: Endpoint) -> list[tuple[str, str]]:
    """What the endpoint was sent: (event type, reason) for conversation events."""
    events: list[Event] = ep.queue.drain(10_000, 1e18)
    return [
        (type(e).__name__, getattr(e, "reason", ""))
        for e in events
        if isinstance(e, (Invitation, ConversationEnded))
    ]


async def conference(pool: Pool, host: str, organizer: Endpoint, *members: Endpoint) -> str:
    node = pool[host]
    created = await node.create_conversation(organizer, [m.uri for m in members], "s", None)
    await pool.settle()
    for member in members:
        home = next(fe for fe in FES if pool[fe].engine.registrar.get(member.id) is member)
        await pool[home].accept(member, created.conversation_id)
    await pool.settle()
    for ep in (organizer, *members):
        seen(ep)
    return created.conversation_id


async def test_a_member_whose_group_moves_away_from_the_host_is_rung_at_the_new_home() -> None:
    pool = Pool([0, 1, 2])  # user 1 organizes (group 0), users 2 and 3 are members
    await pool.push(table(1, ["A", "A", "B"], [["B"], ["C"], ["C"]]), *FES)
    organizer, member, other = pool.sign_in("A", 1), pool.sign_in("A", 2), pool.sign_in("B", 3)
    cid = await conference(pool, "A", organizer, member, other)
    # group 1 moves from A (which keeps hosting the conference) to C
    await pool.push(table(2, ["A", "C", "B"], [["B"], ["A"], ["C"]]), "A", "C", "B")
    assert 2 in pool["A"].engine.immcu.conversations[cid].pending  # still on the roster
    again = await pool["C"].sign_in(uri(2), "pw", "desktop")
    assert seen(again) == [("Invitation", "")]


async def test_a_drained_members_invitation_reaches_the_new_home_when_the_host_lags() -> None:
    pool = Pool([0, 1, 2])  # user 3 organizes on B; users 1 and 2 are homed on A
    await pool.push(table(1, ["A", "A", "B"], [["B"], ["C"], ["C"]]), *FES)
    organizer, member, other = pool.sign_in("B", 3), pool.sign_in("A", 2), pool.sign_in("A", 1)
    cid = await conference(pool, "B", organizer, member, other)
    # group 1 moves A -> C; A tells the host B before B has the new table
    await pool.push(table(2, ["A", "C", "B"], [["B"], ["A"], ["C"]]), "A", "B", "C")
    assert 2 in pool["B"].engine.immcu.conversations[cid].pending
    assert 2 not in pool["A"].invitations  # nothing left behind at the old home
    assert set(pool["C"].invitations[2]) == {cid}
    assert pool["C"].invitations[2][cid][0] == "B"


async def test_the_end_reaches_a_member_before_the_invitation_back() -> None:
    for pending in (False, True):
        pool = Pool([0, 1, 2])  # user 1 organizes on A; user 2 on A; user 3 on C
        await pool.push(table(1, ["A", "A", "C"], [["B"], ["C"], ["A"]]), *FES)
        organizer, member = pool.sign_in("A", 1), pool.sign_in("A", 2)
        other = pool.sign_in("C", 3)
        if pending:
            created = await pool["A"].create_conversation(
                organizer, [member.uri, other.uri], "s", None
            )
            cid = created.conversation_id
            await pool.settle()
            await pool["C"].accept(other, cid)
            await pool.settle()
            seen(member)
            seen(other)
        else:
            cid = await conference(pool, "A", organizer, member, other)
        # the organizer's group moves A -> B, and B (the new host) hears of it first
        await pool.push(table(2, ["B", "A", "C"], [["A"], ["C"], ["A"]]), "B", "C", "A")
        assert seen(member) == [("ConversationEnded", "host-changed"), ("Invitation", "")]
        got = seen(other)
        assert got == [("ConversationEnded", "host-changed"), ("Invitation", "")], (pending, got)
        user = pool["A"].engine.directory.by_id(2)
        assert user.invitations == {cid}
        assert set(pool["A"].invitations[2]) == {cid}
        assert set(pool["B"].engine.immcu.conversations[cid].pending) == {1, 2, 3}
        # accepting goes to the new host, whatever A's table said when the invitation came
        joined = await pool["A"].accept(member, cid)
        assert joined.conference_uri
        assert 2 in pool["B"].engine.immcu.conversations[cid].participants
