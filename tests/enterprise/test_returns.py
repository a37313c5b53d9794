"""Replicas that come back (enterprise.fabric with enterprise.lineage): a front end that
restarts brings its replicas from its local store; groups recover by themselves once 2 are
back, the freshest serving; a returning replica catches up with only what it missed when its
history is a prefix of the primary's, and gets a whole copy when it may not be. Pure."""

from __future__ import annotations

from enterprise.changes import (
    CatchUpTask,
    Change,
    CopyTask,
    GroupQuorumLost,
    GroupRecovered,
    ReloadTask,
    ReplicaDropped,
)
from enterprise.fabric import Fabric, ResetType
from enterprise.lineage import Lineage
from pool.status import GroupState
from tests.enterprise.test_fabric import (
    TIMEOUT,
    acknowledge,
    address,
    beat,
    metrics_address,
    of,
    started,
)


def held_by(fabric: Fabric, fe: str, seq: int = 0) -> dict[int, int]:
    p = fabric.placement
    assert p is not None
    return dict.fromkeys(p.replicas_on(fe), seq)


def back(fabric: Fabric, fe: str, held: dict[int, int], now: float = 1.0) -> list[Change]:
    return fabric.register(fe, address(fe), metrics_address(fe), now, held)


def test_two_of_three_crash_and_come_back_every_group_recovers_without_a_reset() -> None:
    fabric = started(3)
    groups = fabric.routing_groups
    held2, held3 = held_by(fabric, "fe-2", 5), held_by(fabric, "fe-3", 5)
    fabric.report_freshness("fe-1", dict.fromkeys(range(groups), 5))
    # the new primaries bring their remaining secondaries level
    levelled = len(of(fabric.mark_dead("fe-2", "killed"), CatchUpTask))
    changes = fabric.mark_dead("fe-3", "killed")
    assert len(of(changes, GroupQuorumLost)) == groups
    assert not fabric.pool_serving().ok

    changes = back(fabric, "fe-2", held2)

    recovered = of(changes, GroupRecovered)
    assert sorted(r.group for r in recovered) == list(range(groups))
    assert fabric.lost_groups == ()
    assert all(fabric.group_serving(g).ok for g in range(groups))
    # equally fresh: the survivor keeps serving, the returning replica catches up
    assert all(r.primary == "fe-1" for r in recovered)
    assert {(t.group, t.to_fe, t.since) for t in of(changes, CatchUpTask)} == {
        (g, "fe-2", 5) for g in range(groups)
    }
    assert not of(changes, ReloadTask)
    assert not of(changes, CopyTask)

    changes = back(fabric, "fe-3", held3)
    assert len(of(changes, CatchUpTask)) == groups
    acknowledge(fabric)
    status = fabric.status({}, {}, 2.0)
    assert all(g.state is GroupState.HEALTHY for g in status.routing_groups)
    assert fabric.whole
    assert fabric.counters.recoveries == groups
    assert fabric.counters.catch_ups == 2 * groups + levelled


def test_the_freshest_returning_replica_becomes_primary() -> None:
    fabric = started(3)
    g = 0
    p = fabric.placement
    assert p is not None
    survivor = p[g].primary
    others = [fe for fe in ("fe-1", "fe-2", "fe-3") if fe != survivor]
    fabric.report_freshness(survivor, {g: 3})
    for fe in others:
        fabric.mark_dead(fe, "killed")
    fresh = others[0]

    changes = back(fabric, fresh, {g: 9})

    recovered = next(r for r in of(changes, GroupRecovered) if r.group == g)
    assert recovered.primary == fresh
    assert fabric.routing_table.home_of(g) == fresh
    task = next(t for t in of(changes, CatchUpTask) if t.group == g)
    assert (task.from_fe, task.to_fe, task.since) == (fresh, survivor, 3)


def test_a_primary_back_with_writes_its_successor_never_had_gets_a_whole_copy() -> None:
    fabric = started(3)
    g = 0
    p = fabric.placement
    assert p is not None
    old = p[g].primary
    for fe in p[g].members:
        fabric.report_freshness(fe, {g: 10 if fe == old else 8})
    fabric.mark_dead(old, "killed")  # a secondary at 8 is promoted: its epoch starts at 8

    changes = back(fabric, old, {g: 10})  # 9 and 10 were never acknowledged

    assert [t.to_fe for t in of(changes, CopyTask) if t.group == g] == [old]
    assert not [t for t in of(changes, CatchUpTask) if t.group == g]


def test_a_secondary_back_behind_the_next_epoch_start_catches_up() -> None:
    fabric = started(3)
    g = 0
    p = fabric.placement
    assert p is not None
    gone = p[g].secondaries[0]
    for fe in p[g].members:
        fabric.report_freshness(fe, {g: 8})
    fabric.mark_dead(gone, "killed")
    fabric.report_freshness(p[g].primary, {g: 20})

    changes = back(fabric, gone, {g: 8})

    task = next(t for t in of(changes, CatchUpTask) if t.group == g)
    assert (task.from_fe, task.since) == (p[g].primary, 8)


def test_replicas_nobody_needs_or_of_unknown_history_are_dropped() -> None:
    fabric = started(3)
    p = fabric.placement
    assert p is not None
    mine = held_by(fabric, "fe-2")
    fabric.mark_dead("fe-2", "killed")
    fabric.mark_dead("fe-3", "killed")
    back(fabric, "fe-3", held_by(fabric, "fe-3"))  # nothing: fe-3 holds nothing in the table
    fabric.reset(ResetType.QUORUM_LOSS_RECOVERY)  # reloaded: fe-2's copies are of the past

    changes = back(fabric, "fe-2", mine)

    assert sorted(d.group for d in of(changes, ReplicaDropped)) == sorted(mine)
    assert not of(changes, CatchUpTask)


def test_lineage_prefix_rule() -> None:
    lineage = Lineage()
    lineage.left(0, "fe-1")  # in epoch 0
    lineage.begin(0, 8)  # epoch 1 starts at 8
    assert lineage.epoch_of(0, "fe-1") == 0
    assert lineage.epoch_of(0, "fe-2") == 1
    assert lineage.is_prefix(0, 0, 8, 1)
    assert not lineage.is_prefix(0, 0, 9, 1)
    assert lineage.is_prefix(0, 1, 100, 1)
    assert not lineage.is_prefix(0, 2, 1, 1)
    lineage.forget(0)
    assert not lineage.knows(0, "fe-1")


def test_recovery_from_replicas_keeps_the_survivors_and_reloads_only_the_empty() -> None:
    fabric = started(5)
    p = fabric.placement
    assert p is not None
    doomed = {"fe-1", "fe-2", "fe-3"}
    beat(fabric, 1.0, skip=sorted(doomed))
    fabric.check(TIMEOUT + 0.1)  # all three noticed at once: nothing rebuilt in between
    lost = set(fabric.lost_groups)
    empty = {g for g in lost if set(p[g].members) <= doomed}
    kept = lost - empty
    assert kept

    changes = fabric.reset(ResetType.FROM_REPLICAS)

    assert {r.group for r in of(changes, GroupRecovered)} == kept
    assert {r.group for r in of(changes, ReloadTask)} == empty
    assert fabric.lost_groups == ()
    assert fabric.counters.reloads == len(empty)


def test_a_two_front_end_pool_back_in_reverse_order_recovers_by_itself() -> None:
    fabric = started(2)
    fabric.mark_dead("fe-1", "killed")
    fabric.mark_dead("fe-2", "killed")  # down last
    held = dict.fromkeys(range(fabric.routing_groups), 4)
    back(fabric, "fe-2", held)
    changes = back(fabric, "fe-1", held, now=2.0)
    assert len(of(changes, GroupRecovered)) == fabric.routing_groups
    assert all(fabric.group_serving(g).ok for g in range(fabric.routing_groups))


def test_a_two_front_end_pool_back_in_the_wrong_order_waits_for_recovery() -> None:
    fabric = started(2)
    fabric.mark_dead("fe-1", "killed")
    fabric.mark_dead("fe-2", "killed")  # down last
    held = dict.fromkeys(range(fabric.routing_groups), 4)
    back(fabric, "fe-1", held)  # the wrong one first
    changes = back(fabric, "fe-2", held, now=2.0)
    assert not of(changes, GroupRecovered)
    detail = fabric.group_serving(0).detail
    assert "fe-1 came back first, but fe-2 went down last" in detail
    assert "QUORUM_LOSS_RECOVERY" in detail
    assert fabric.status({}, {}, 3.0).routing_groups[0].state is GroupState.QUORUM_LOSS

    fabric.reset(ResetType.QUORUM_LOSS_RECOVERY)
    assert all(fabric.group_serving(g).ok for g in range(fabric.routing_groups))
