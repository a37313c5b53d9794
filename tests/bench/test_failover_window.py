"""The drill's fail-over window (bench.failover): it runs from the kill through the restart,
the catch-up and the rebalance, until the users of the groups handed back have signed in on
the restarted front end again; only a pool that does not heal itself closes it at the
fail-over. Driven by hand with the pool's statuses and stand-in sessions: no pool here."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.failover import Failover, KillPlan
from pool._proto.poolsim.v1 import admin_pb2 as apb
from pool.directory import routing_group_of

GROUPS = 6
HEALTHY = apb.ROUTING_GROUP_STATE_HEALTHY
DEGRADED = apb.ROUTING_GROUP_STATE_DEGRADED


@dataclass
class FakeSession:
    user_uri: str
    front_end_id: str


class FakeRun:
    def __init__(self, sessions: dict[int, list[FakeSession]]) -> None:
        self._sessions = sessions
        self.t = 0.0
        self.stopping = False

    @property
    def sessions(self) -> Mapping[int, Sequence[Any]]:
        return self._sessions

    def now(self) -> float:
        return self.t

    async def until(self, at: float) -> None:
        self.t = max(self.t, at)

    def uri(self, user: int) -> str:
        return f"sip:user{user}@contoso.com"


def status(primaries: list[str], state: int = HEALTHY) -> apb.PoolStatus:
    counts = {fe: primaries.count(fe) for fe in ("fe1", "fe2", "fe3")}
    return apb.PoolStatus(
        front_ends=[apb.FrontEndStatus(id=fe, primaries=n) for fe, n in counts.items()],
        routing_groups=[
            apb.RoutingGroupStatus(id=g, primary=fe, state=state) for g, fe in enumerate(primaries)
        ],
    )


def killed(run: FakeRun, *, heals: bool = True) -> Failover:
    fo = Failover(KillPlan(10.0, "fe2", "token", ("a", "b", "c")))
    fo.victim, fo.kill_at, fo.heals = "fe2", 10.0, heals
    fo.affected_users = {1}
    fo.affected_uris = {run.uri(1): 1}
    fo.pool_failed_over_at, fo.all_reregistered_at = 11.0, 11.5
    fo.served_again = {1: 11.8}
    fo._close_window()
    return fo


def test_a_pool_that_heals_keeps_the_window_open_until_it_is_whole_again() -> None:
    uri_back = next(
        f"sip:user{u}@contoso.com"
        for u in range(100)
        if routing_group_of(f"sip:user{u}@contoso.com", GROUPS) == 1
    )
    user_back = int(uri_back.split("user")[1].split("@")[0])
    moved = FakeSession(uri_back, "fe1")  # its group 1 was failed over to fe1
    run = FakeRun({user_back: [moved], 1: [FakeSession("sip:user1@contoso.com", "fe3")]})
    fo = killed(run)
    assert fo.failed_over_by == 11.8
    assert math.isinf(fo.window_end)  # the fail-over is over, the window is not
    assert fo.during(30.0)

    fo.restarted_at = 14.0
    run.t = 14.5
    fo._watch_healing(run, status(["fe1"] * 3 + ["fe3"] * 3, DEGRADED), "fe2", 14.5)
    assert fo.healthy_at is None  # replicas still catching up
    run.t = 15.0
    fo._watch_healing(run, status(["fe1", "fe2", "fe1", "fe3", "fe2", "fe3"]), "fe2", 15.0)
    assert fo.healthy_at == fo.rebalanced_at == 15.0
    assert fo.moved_back == [moved]
    assert math.isinf(fo.window_end)  # group 1's users are still to sign in on fe2

    async def settle() -> None:
        watch = asyncio.create_task(fo._watch_moved_back(run))
        await asyncio.sleep(0.01)
        assert not watch.done()
        run.t = 16.2
        moved.front_end_id = "fe2"  # re-registered at its home again
        await asyncio.wait_for(watch, 5.0)

    asyncio.run(settle())
    assert fo.settled_at == 16.2
    assert fo.window_end == 16.2
    assert not fo.during(16.3)
    summary = fo.summary()
    assert summary["window_through"] == "the pool whole again"
    assert summary["settled_after"] == 16.2 - 10.0
    assert summary["timeline"][-1][1].startswith("pool whole again")


def test_a_pool_that_does_not_heal_closes_the_window_at_the_fail_over() -> None:
    run = FakeRun({1: [FakeSession("sip:user1@contoso.com", "fe3")]})
    fo = killed(run, heals=False)
    assert fo.window_end == 11.8
    assert fo.summary()["window_through"] == "the fail-over"


class FakeAdmin:
    def __init__(self, statuses: list[apb.PoolStatus]) -> None:
        self.statuses = statuses

    async def status(self) -> apb.PoolStatus:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


def test_without_self_healing_the_watch_ends_at_the_fail_over() -> None:
    run = FakeRun({1: [FakeSession("sip:user1@contoso.com", "fe3")]})
    fo = Failover(KillPlan(10.0, "fe2", "token", ("a", "b", "c")))
    fo.victim, fo.kill_at, fo.heals = "fe2", 10.0, False
    before = status(["fe1", "fe2", "fe3"] * 2)
    after = status(["fe1", "fe3", "fe3"] * 2, DEGRADED)
    after.front_ends[1].state = apb.FRONT_END_STATE_DOWN
    admin = FakeAdmin([before, after])

    asyncio.run(asyncio.wait_for(fo._watch_pool(run, admin), 5.0))  # type: ignore[arg-type]

    assert fo.pool_failed_over_at is not None
    assert fo.restarted_at is None
