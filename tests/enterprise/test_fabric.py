"""The pool manager (enterprise.fabric): first start, failure detection on virtual time,
promotion, rebuild, both kinds of quorum loss, operator resets and the status it reports.

Pure and deterministic: time is a number passed in, no sleeps, no framework.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from enterprise.fabric import (
    TRANSITIONS,
    Change,
    CopyTask,
    Fabric,
    FabricConfig,
    FrontEndChanged,
    FrontEndRemoved,
    GroupQuorumLost,
    IllegalTransition,
    QuorumChanged,
    ReloadTask,
    ReplicaDropped,
    ResetType,
    RoutingTable,
    TableSwapped,
)
from enterprise.placement import Promotion
from enterprise.quorum import FIRST_START_NEEDED, QuorumState
from pool.config import ConfigError
from pool.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from pool.status import FrontEndState, GroupState
from pool.status import QuorumState as StatusQuorumState

UP, DOWN, DRAINING, STARTING = (
    FrontEndState.UP,
    FrontEndState.DOWN,
    FrontEndState.DRAINING,
    FrontEndState.STARTING,
)
INTERVAL = 0.5
MISSES = 3
TIMEOUT = INTERVAL * MISSES

C = TypeVar("C")


def fes(n: int) -> list[str]:
    return [f"fe-{i}" for i in range(1, n + 1)]


def address(fe: str) -> str:
    return f"{fe}.contoso.com:5061"


def metrics_address(fe: str) -> str:
    return f"{fe}.contoso.com:9100"


def make(n: int, **settings: float | int | str) -> Fabric:
    return Fabric(FabricConfig(pool_size=n, **settings))  # type: ignore[arg-type]


def register(fabric: Fabric, ids: Iterable[str], now: float = 0.0) -> list[Change]:
    changes: list[Change] = []
    for fe in ids:
        changes += fabric.register(fe, address(fe), metrics_address(fe), now)
    return changes


def started(n: int, now: float = 0.0, **settings: float | int | str) -> Fabric:
    """A pool of ``n`` FEs, all registered at ``now``, the copies onto the later ones done."""
    fabric = make(n, **settings)
    register(fabric, fes(n), now)
    acknowledge(fabric)
    return fabric


def acknowledge(fabric: Fabric) -> None:
    """Every copy and catch-up ordered so far was carried out (as the fabric actor reports)."""
    for group, fe in list(fabric.catching_up):
        fabric.caught_up(group, fe)


def beat(fabric: Fabric, now: float, *, skip: Sequence[str] = ()) -> None:
    for fe, state in fabric.front_ends().items():
        if state in (UP, DRAINING) and fe not in skip:
            fabric.heartbeat(fe, now)


def of(changes: Iterable[Change], kind: type[C]) -> list[C]:
    """The changes of one kind, in order."""
    return [c for c in changes if isinstance(c, kind)]


def copies(changes: Iterable[Change]) -> list[CopyTask]:
    return of(changes, CopyTask)


def assert_consistent(fabric: Fabric) -> None:
    """Replicas only on UP FEs, the routing table agrees with the placement, and every served
    group has a live primary and at least one live secondary."""
    p = fabric.placement
    assert p is not None
    states = fabric.front_ends()
    table = fabric.routing_table
    for group, replicas in p.items():
        for fe in replicas.members:
            assert states[fe] is UP, f"group {group} has a replica on {fe} ({states[fe]})"
        home = table.home_of(group)
        if home:
            assert home == replicas.primary
            assert table.secondaries_of(group) == replicas.secondaries
            assert len(replicas.members) >= 2
            assert table.address_of(home) == address(home)
            assert fabric.group_serving(group).ok
        else:
            assert table.reason_of(group)
            assert not fabric.group_serving(group).ok


# --- configuration ---


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("pool_size", 1, "expected an integer 2..12 front ends"),
        ("pool_size", 13, "expected an integer 2..12 front ends"),
        ("groups_per_front_end", 0, "expected an integer 1..1000"),
        ("replicas", 4, "expected an integer 2..3 (SPEC: 3)"),
        ("heartbeat_interval", 0.0, "expected 0.001..60 seconds"),
        ("heartbeat_misses", 0, "expected an integer 1..100"),
        ("drain_timeout", -1.0, "expected 0..3600 seconds"),
        ("pool_name", "", "expected a name like pool01"),
    ],
)
def test_config_errors_name_field_value_and_expectation(
    field: str, value: float | str, expected: str
) -> None:
    settings: dict[str, float | int | str] = {"pool_size": 5, field: value}
    with pytest.raises(ConfigError) as info:
        FabricConfig(**settings)  # type: ignore[arg-type]
    assert f"{field}={value!r}" in str(info.value)
    assert expected in str(info.value)


def test_config_defaults() -> None:
    config = FabricConfig(pool_size=5)
    assert config.groups_per_front_end == 8
    assert config.replicas == 3
    assert config.heartbeat_timeout == pytest.approx(1.5)
    assert config.routing_groups == 40
    with pytest.raises(AttributeError):
        config.pool_size = 6  # type: ignore[misc]


# --- first start ---


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 12])
def test_first_start_waits_for_the_table_then_places_groups(n: int) -> None:
    fabric = make(n)
    needed = FIRST_START_NEEDED[n]
    for k, fe in enumerate(fes(needed - 1), start=1):
        fabric.register(fe, address(fe), metrics_address(fe), 0.0)
        waiting = f"waiting for first start: {k} of {n} front ends running, {needed} needed"
        assert fabric.quorum.state is QuorumState.WAITING_FOR_FIRST_START
        assert fabric.placement is None
        assert fabric.pool_serving().detail == waiting
        status = fabric.status({}, {}, 0.0)
        assert status.quorum is StatusQuorumState.WAITING_FOR_FIRST_START
        assert status.quorum_detail == waiting
        assert all(
            g.state is GroupState.QUORUM_LOSS and not g.primary for g in status.routing_groups
        )
        assert set(fabric.routing_table.homes) == {""}
        assert fabric.routing_table.reason_of(0) == waiting

    before = fabric.routing_table.version
    last = fes(needed)[-1]
    changes = fabric.register(last, address(last), metrics_address(last), 1.0)

    assert fabric.started
    assert (
        QuorumChanged(
            QuorumState.WAITING_FOR_FIRST_START, QuorumState.HAS_QUORUM, fabric.quorum.detail
        )
        in changes
    )
    assert changes[-1] == TableSwapped(before + 1)
    assert fabric.routing_table.version == before + 1
    p = fabric.placement
    assert p is not None
    assert len(p) == 8 * n
    k = min(3, needed)
    assert all(r.replica_count == k for r in p.values())
    counts = p.primary_counts()
    assert {fe for fe, c in counts.items() if c} == set(fes(needed))
    assert max(counts.values()) - min(counts.values()) <= 1
    assert fabric.status({}, {}, 1.0).started_at == 1.0
    if needed >= 2:
        assert fabric.pool_serving().ok
        assert_consistent(fabric)


def test_two_fe_pool_starts_with_one_but_serves_from_two() -> None:
    fabric = make(2)
    fabric.register("fe-1", address("fe-1"), metrics_address("fe-1"), 0.0)
    assert fabric.started
    assert fabric.pool_serving().ok
    assert fabric.group_serving(3).detail == (
        "routing group 3 is not served yet: 1 of 2 replicas running, 2 needed; "
        "start another front end"
    )
    assert fabric.lost_groups == ()

    changes = fabric.register("fe-2", address("fe-2"), metrics_address("fe-2"), 1.0)

    assert {(c.group, c.from_fe, c.to_fe) for c in copies(changes)} == {
        (g, "fe-1", "fe-2") for g in range(16)
    }
    assert all(fabric.group_serving(g).ok for g in range(16))
    assert_consistent(fabric)


def test_a_front_end_joining_after_the_first_start_is_given_secondaries() -> None:
    fabric = make(5)
    register(fabric, fes(4))
    changes = register(fabric, ["fe-5"], now=2.0)

    moves = copies(changes)
    dropped = of(changes, ReplicaDropped)
    assert moves
    assert len(moves) == len(dropped)
    assert {c.to_fe for c in moves} == {"fe-5"}
    p = fabric.placement
    assert p is not None
    assert all(c.from_fe == p[c.group].primary for c in moves)
    replicas = p.replica_counts()
    assert max(replicas.values()) - min(replicas.values()) <= 1
    assert fabric.start_order == tuple(fes(5))
    assert_consistent(fabric)
    # settled: nothing more moves
    beat(fabric, 2.0)
    assert fabric.check(2.0) == []


def test_status_lists_front_ends_groups_and_quorum() -> None:
    fabric = make(5, pool_name="pool-east")
    register(fabric, ["fe-3", "fe-1", "fe-2", "fe-5"], now=10.0)
    users = {g: 100 for g in range(40)}
    status = fabric.status(
        users, {"fe-3": 7, "fe-1": 5}, 12.0, users_signed_in=9, wall_now=1_800_000_002.0
    )

    assert status.edition == "enterprise"
    assert status.pool_name == "pool-east"
    assert [f.id for f in status.front_ends] == ["fe-3", "fe-1", "fe-2", "fe-5"]
    assert [f.start_order for f in status.front_ends] == [1, 2, 3, 4]
    first = status.front_ends[0]
    assert (first.address, first.metrics_address, first.state) == (
        address("fe-3"),
        metrics_address("fe-3"),
        UP,
    )
    assert first.endpoints == 7
    assert sum(f.primaries for f in status.front_ends) == 40
    assert sum(f.primaries + f.secondaries for f in status.front_ends) == 120
    assert len(status.routing_groups) == 40
    assert all(g.state is GroupState.HEALTHY and g.users == 100 for g in status.routing_groups)
    assert all(len(g.secondaries) == 2 for g in status.routing_groups)
    assert status.quorum is StatusQuorumState.HAS_QUORUM
    assert status.quorum_detail == "pool has quorum: 4 of 5 front ends running, 3 needed"
    assert (status.users_provisioned, status.endpoints_signed_in, status.users_signed_in) == (
        4000,
        12,
        9,
    )
    assert status.started_at == 1_800_000_000.0
    assert status.extra["routing_table_version"] == str(fabric.routing_table.version)

    with pytest.raises(NotFound, match="unknown routing group 40"):
        fabric.status({40: 1}, {}, 12.0)
    with pytest.raises(NotFound, match="unknown front end 'fe-9'"):
        fabric.status({}, {"fe-9": 1}, 12.0)


# --- failure detection ---


def test_heartbeat_timeout_marks_a_front_end_down_after_misses_intervals() -> None:
    fabric = started(3, heartbeat_interval=INTERVAL, heartbeat_misses=MISSES)
    beat(fabric, 1.0)
    beat(fabric, 2.0, skip=["fe-2"])

    assert fabric.check(1.0 + TIMEOUT) == []
    assert fabric.state_of("fe-2") is UP

    changes = fabric.check(1.0 + TIMEOUT + 0.01)
    [down] = of(changes, FrontEndChanged)
    assert down == FrontEndChanged(
        "fe-2", UP, DOWN, "no heartbeat for 1.51 s (timeout 1.5 s: 3 missed at 0.5 s)"
    )
    assert fabric.state_of("fe-2") is DOWN
    assert_consistent(fabric)


def test_a_crash_is_noticed_within_about_two_seconds_when_checked_every_interval() -> None:
    fabric = started(5, heartbeat_interval=INTERVAL, heartbeat_misses=MISSES)
    crash_at = 3.2
    noticed_at = None
    for tick in range(1, 40):
        now = tick * INTERVAL
        beat(fabric, now, skip=["fe-4"] if now > crash_at else [])
        if any(isinstance(c, FrontEndChanged) and c.fe == "fe-4" for c in fabric.check(now)):
            noticed_at = now
            break
    assert noticed_at is not None
    assert noticed_at - crash_at <= TIMEOUT + INTERVAL
    assert fabric.state_of("fe-4") is DOWN
    assert [fe for fe, s in fabric.front_ends().items() if s is DOWN] == ["fe-4"]


def test_heartbeat_from_a_front_end_declared_down_is_refused() -> None:
    fabric = started(3)
    fabric.mark_dead("fe-1", "node lost")
    with pytest.raises(FailedPrecondition, match="fe-1 is down in pool pool01: register it again"):
        fabric.heartbeat("fe-1", 5.0)


def test_mark_dead_is_idempotent() -> None:
    fabric = started(3)
    assert of(fabric.mark_dead("fe-1", "actor exited"), FrontEndChanged) == [
        FrontEndChanged("fe-1", UP, DOWN, "actor died: actor exited")
    ]
    assert fabric.mark_dead("fe-1", "actor exited") == []


# --- fail-over and rebuild ---


def test_a_dead_primary_is_replaced_by_its_freshest_live_secondary() -> None:
    fabric = started(5)
    p = fabric.placement
    assert p is not None
    homed = p.primaries_on("fe-1")
    assert homed
    # the *last* secondary of each group is the freshest, so the tie-break alone would not pick it
    expected = {g: p[g].secondaries[-1] for g in homed}
    for g in homed:
        first, last = p[g].secondaries[0], p[g].secondaries[-1]
        fabric.report_freshness(first, {g: 41})
        fabric.report_freshness(last, {g: 42})
    version = fabric.routing_table.version

    changes = fabric.mark_dead("fe-1", "killed")

    promotions = of(changes, Promotion)
    assert promotions == [Promotion(g, "fe-1", expected[g]) for g in homed]
    assert fabric.routing_table.version > version
    assert of(changes, TableSwapped) == [TableSwapped(fabric.routing_table.version)]
    table = fabric.routing_table
    assert all(table.home_of(g) == expected[g] for g in homed)
    assert "fe-1" not in table.homes
    assert "fe-1" not in table.addresses
    assert fabric.counters.promotions == len(homed)
    assert_consistent(fabric)


def test_rebuild_copies_lost_replicas_onto_spares() -> None:
    fabric = started(5)
    before = fabric.placement
    assert before is not None
    held = set(before.replicas_on("fe-2"))
    rebuilds = fabric.counters.rebuilds

    changes = fabric.mark_dead("fe-2", "killed")

    after = fabric.placement
    assert after is not None
    tasks = copies(changes)
    # one copy per lost replica first; any further copy evens out the load (a replica moves)
    rebuilt = tasks[: len(held)]
    assert sorted(t.group for t in rebuilt) == sorted(held)
    assert len(tasks) - len(rebuilt) == len(of(changes, ReplicaDropped))
    for task in rebuilt:
        assert task.to_fe != "fe-2"
        assert fabric.state_of(task.to_fe) is UP
        assert task.to_fe not in before[task.group].members  # a spare: held no copy before
        assert task.from_fe == after[task.group].primary
        assert task.to_fe in after[task.group].secondaries
    assert all(r.replica_count == 3 for r in after.values())
    assert fabric.counters.rebuilds - rebuilds == len(tasks)
    status = fabric.status({}, {}, 0.0)
    copying = {t.group for t in tasks}
    assert all(g.state is GroupState.DEGRADED for g in status.routing_groups if g.id in copying)
    acknowledge(fabric)  # the copies are done: healthy
    assert all(g.state is GroupState.HEALTHY for g in fabric.status({}, {}, 0.0).routing_groups)
    assert_consistent(fabric)


def test_a_front_end_that_comes_back_rejoins_and_gets_replicas() -> None:
    fabric = started(3)
    fabric.mark_dead("fe-3", "reboot")
    p = fabric.placement
    assert p is not None
    assert p.replicas_on("fe-3") == ()
    assert all(r.replica_count == 2 for r in p.values())  # no spare in a pool of 3
    status = fabric.status({}, {}, 1.0)
    assert all(g.state is GroupState.DEGRADED for g in status.routing_groups)

    changes = fabric.register("fe-3", address("fe-3"), metrics_address("fe-3"), 2.0)

    assert of(changes, FrontEndChanged) == [
        FrontEndChanged("fe-3", DOWN, UP, f"registered at {address('fe-3')}")
    ]
    assert {(t.group, t.to_fe) for t in copies(changes)} == {(g, "fe-3") for g in range(24)}
    assert fabric.start_order == ("fe-1", "fe-2", "fe-3")  # it keeps its place
    p = fabric.placement
    assert p is not None
    assert all(r.replica_count == 3 for r in p.values())
    assert p.primary_counts()["fe-3"] == 0
    assert not of(fabric.rebalance(), Promotion)  # not onto replicas still being copied
    acknowledge(fabric)

    moves = of(fabric.rebalance(), Promotion)

    p = fabric.placement
    assert p is not None
    assert moves
    assert set(p.primary_counts().values()) == {8}
    assert fabric.counters.primary_moves == len(moves)
    assert_consistent(fabric)


def test_register_while_still_up_is_a_restart_that_lost_its_copies() -> None:
    fabric = started(5)
    p = fabric.placement
    assert p is not None
    held = p.replicas_on("fe-1")

    changes = fabric.register("fe-1", "10.1.1.1:5061", "10.1.1.1:9100", 1.0)

    assert of(changes, FrontEndChanged)[:1] == [
        FrontEndChanged("fe-1", UP, DOWN, "registered again: it restarted, its copies are gone")
    ]
    assert of(changes, FrontEndChanged)[-1] == FrontEndChanged(
        "fe-1", DOWN, UP, "registered at 10.1.1.1:5061"
    )
    assert {t.group for t in copies(changes) if t.to_fe != "fe-1"} == set(held)
    assert fabric.routing_table.address_of("fe-1") == "10.1.1.1:5061"
    assert fabric.lost_groups == ()


# --- pool quorum ---


def test_pool_quorum_lost_below_the_functional_table_and_regained() -> None:
    fabric = started(5)
    fabric.check(0.0)
    changes: list[Change] = []
    for fe in ["fe-1", "fe-2", "fe-3"]:
        changes += fabric.mark_dead(fe, "power cut")

    lost = "pool quorum lost: 2 of 5 front ends running, 3 needed"
    assert QuorumChanged(QuorumState.HAS_QUORUM, QuorumState.LOST, lost) in changes
    assert fabric.pool_serving().detail == lost
    assert fabric.serving("fe-4").detail == lost
    assert fabric.group_serving(0).detail == lost
    with pytest.raises(Unavailable, match=lost):
        fabric.pool_serving().require()
    table = fabric.routing_table
    assert set(table.homes) == {""}
    assert set(table.reasons) == {lost}
    assert fabric.status({}, {}, 0.0).quorum is StatusQuorumState.LOST

    changes = fabric.register("fe-2", address("fe-2"), metrics_address("fe-2"), 5.0)

    assert of(changes, QuorumChanged) == [
        QuorumChanged(
            QuorumState.LOST,
            QuorumState.HAS_QUORUM,
            "pool has quorum: 3 of 5 front ends running, 3 needed",
        )
    ]
    assert fabric.pool_serving().ok
    assert fabric.serving("fe-2").ok
    assert_consistent(fabric)


def test_only_the_first_seven_count_in_a_pool_of_eight() -> None:
    order = ["fe-8", "fe-7", "fe-6", "fe-5", "fe-4", "fe-3", "fe-2", "fe-1"]  # fe-1 came up last
    fabric = make(8)
    register(fabric, order)
    assert fabric.start_order == tuple(order)

    # four of the first seven down: 4 running (fe-4, fe-3, fe-2, fe-1), but only 3 of the first 7
    for fe in ["fe-8", "fe-7", "fe-6", "fe-5"]:
        fabric.mark_dead(fe, "rack down")
    assert fabric.quorum.state is QuorumState.LOST
    assert fabric.pool_serving().detail == (
        "pool quorum lost: 4 of 8 front ends running, 4 of the first 7 needed (3 of them running)"
    )

    # fe-8 is one of the first: back to 4 of the first 7
    register(fabric, ["fe-8"], now=1.0)
    assert fabric.pool_serving().ok

    # the eighth to come up (fe-1) does not count: losing it keeps quorum ...
    fabric.mark_dead("fe-1", "disk")
    assert fabric.pool_serving().ok
    # ... but losing one more of the first seven does not
    fabric.mark_dead("fe-2", "disk")
    assert fabric.quorum.state is QuorumState.LOST


# --- routing-group quorum ---


def test_routing_group_quorum_loss_and_quorum_loss_recovery() -> None:
    fabric = started(5)
    p = fabric.placement
    assert p is not None
    doomed = {"fe-1", "fe-2"}
    expected_lost = [g for g, r in p.items() if len(doomed & set(r.members)) == 2]
    assert expected_lost
    beat(fabric, 1.0, skip=sorted(doomed))

    changes = fabric.check(TIMEOUT + 0.1)  # both noticed in one check

    assert [c.group for c in of(changes, GroupQuorumLost)] == expected_lost
    assert fabric.lost_groups == tuple(expected_lost)
    assert fabric.pool_serving().ok  # 3 of 5 running
    g = expected_lost[0]
    assert fabric.group_serving(g).detail == (
        f"routing group {g} has lost quorum: 1 of 3 replicas running; start the front ends "
        "that held its replicas, or run ResetPoolRegistrarState(QUORUM_LOSS_RECOVERY)"
    )
    assert fabric.routing_table.home_of(g) == ""
    assert fabric.routing_table.reason_of(g) == fabric.group_serving(g).detail
    assert not any(t.group in expected_lost for t in copies(changes))  # no copy from a survivor
    status = fabric.status({}, {}, 2.0)
    assert status.routing_groups[g].state is GroupState.QUORUM_LOSS
    assert "QUORUM_LOSS_RECOVERY" in status.quorum_detail
    assert_consistent(fabric)

    # the front ends come back empty: the groups stay lost
    register(fabric, sorted(doomed), now=3.0)
    assert fabric.lost_groups == tuple(expected_lost)
    assert not fabric.group_serving(g).ok

    changes = fabric.reset(ResetType.QUORUM_LOSS_RECOVERY)

    reloads = of(changes, ReloadTask)
    assert [r.group for r in reloads] == expected_lost
    p = fabric.placement
    assert p is not None
    assert all(p[r.group].primary == r.fe for r in reloads)
    assert {t.group for t in copies(changes)} >= set(expected_lost)
    assert fabric.lost_groups == ()
    assert all(fabric.group_serving(x).ok for x in range(40))
    assert all(r.replica_count == 3 for r in p.values())
    assert fabric.counters.reloads == len(expected_lost)
    assert changes[-1] == TableSwapped(fabric.routing_table.version)
    assert_consistent(fabric)


def test_full_reset_reloads_every_group() -> None:
    fabric = started(4)
    fabric.mark_dead("fe-4", "gone")
    changes = fabric.reset(ResetType.FULL_RESET)
    assert [r.group for r in of(changes, ReloadTask)] == list(range(32))
    assert len(copies(changes)) == 64
    p = fabric.placement
    assert p is not None
    assert p.replicas_on("fe-4") == ()
    assert set(p.primary_counts().values()) - {0} <= {10, 11}
    assert_consistent(fabric)


def test_service_reset_keeps_data_and_always_publishes() -> None:
    fabric = started(3)
    version = fabric.routing_table.version
    changes = fabric.reset(ResetType.SERVICE_RESET)
    assert of(changes, ReloadTask) == []
    assert changes == [TableSwapped(version + 1)]


def test_machine_state_removed_shrinks_the_pool() -> None:
    fabric = started(5)
    for fe in ["fe-3", "fe-4", "fe-5"]:
        fabric.mark_dead(fe, "hardware failure")
    assert fabric.quorum.state is QuorumState.LOST

    with pytest.raises(FailedPrecondition, match="fe-1 is up: stop it before removing it"):
        fabric.reset(ResetType.MACHINE_STATE_REMOVED, fe_id="fe-1")
    with pytest.raises(InvalidArgument, match="expected a front end id"):
        fabric.reset(ResetType.MACHINE_STATE_REMOVED)

    changes = fabric.reset(ResetType.MACHINE_STATE_REMOVED, fe_id="fe-5")

    assert FrontEndRemoved("fe-5", 4) in changes
    assert fabric.pool_size == 4
    assert fabric.start_order == ("fe-1", "fe-2", "fe-3", "fe-4")
    # 2 of 4 running is enough for a pool of 4
    assert fabric.quorum.detail == "pool has quorum: 2 of 4 front ends running, 2 needed"
    assert fabric.pool_serving().ok
    with pytest.raises(NotFound, match="unknown front end 'fe-5'"):
        fabric.state_of("fe-5")
    with pytest.raises(FailedPrecondition, match="already has its 4 front ends"):
        fabric.register("fe-6", address("fe-6"), metrics_address("fe-6"), 9.0)
    assert_consistent(fabric)


def test_resets_before_the_first_start_are_refused() -> None:
    fabric = make(5)
    register(fabric, ["fe-1"])
    with pytest.raises(FailedPrecondition, match=r"has not started \(waiting for first start"):
        fabric.reset(ResetType.QUORUM_LOSS_RECOVERY)


# --- graceful stop and transitions ---


def test_graceful_stop_drains_then_goes_down() -> None:
    fabric = started(5, drain_timeout=10.0)
    p = fabric.placement
    assert p is not None
    homed = p.primaries_on("fe-2")

    changes = fabric.stop("fe-2", graceful=True, now=1.0)

    assert changes[0] == FrontEndChanged("fe-2", UP, DRAINING, "stopping gracefully")
    assert [c.group for c in of(changes, Promotion)] == list(homed)
    assert fabric.state_of("fe-2") is DRAINING
    assert fabric.quorum.running == 5  # still running while its users move
    assert "fe-2" not in fabric.routing_table.homes
    assert "fe-2" not in fabric.routing_table.addresses
    assert fabric.serving("fe-2").detail == (
        "front end fe-2 is draining: it serves no users; sign in again to be sent to your "
        "home server"
    )
    assert_consistent(fabric)

    beat(fabric, 5.0)
    assert of(fabric.check(5.0), FrontEndChanged) == []
    beat(fabric, 10.5)
    assert of(fabric.check(11.0), FrontEndChanged) == [
        FrontEndChanged("fe-2", DRAINING, DOWN, "drain finished")
    ]
    assert fabric.quorum.running == 4


def test_stop_not_graceful_ends_a_drain_at_once() -> None:
    fabric = started(3)
    fabric.stop("fe-1", graceful=True, now=0.0)
    changes = fabric.stop("fe-1", graceful=False, now=0.1)
    assert changes[0] == FrontEndChanged("fe-1", DRAINING, DOWN, "drain finished")


def test_start_then_register() -> None:
    fabric = started(3)
    fabric.stop("fe-3", graceful=False, now=0.0)
    assert fabric.start("fe-3") == [
        FrontEndChanged("fe-3", DOWN, STARTING, "started by the operator")
    ]
    assert not fabric.serving("fe-3").ok
    changes = fabric.register("fe-3", address("fe-3"), metrics_address("fe-3"), 1.0)
    assert changes[0] == FrontEndChanged("fe-3", STARTING, UP, f"registered at {address('fe-3')}")


def test_illegal_transitions_raise() -> None:
    fabric = started(3)
    with pytest.raises(IllegalTransition, match="fe-1 cannot go from up to starting"):
        fabric.start("fe-1")
    fabric.stop("fe-2", graceful=False, now=0.0)
    with pytest.raises(IllegalTransition, match="fe-2 is already down"):
        fabric.stop("fe-2", graceful=False, now=0.0)
    with pytest.raises(IllegalTransition, match="fe-2 cannot go from down to draining"):
        fabric.stop("fe-2", graceful=True, now=0.0)
    fabric.start("fe-2")
    with pytest.raises(IllegalTransition, match="a starting front end can only become down or up"):
        fabric.stop("fe-2", graceful=True, now=0.0)
    fabric.stop("fe-1", graceful=True, now=0.0)
    with pytest.raises(IllegalTransition, match="fe-1 is already draining"):
        fabric.stop("fe-1", graceful=True, now=0.0)
    assert issubclass(IllegalTransition, FailedPrecondition)  # UNAVAILABLE-free: a state error


def test_transition_table_is_complete() -> None:
    assert set(TRANSITIONS) == {None, *FrontEndState}
    assert TRANSITIONS[FrontEndState.DRAINING] == {DOWN}
    assert UP not in TRANSITIONS[FrontEndState.UP]


def test_unknown_and_malformed_input() -> None:
    fabric = started(3)
    with pytest.raises(NotFound, match="unknown front end 'fe-7' in pool pool01"):
        fabric.heartbeat("fe-7", 0.0)
    with pytest.raises(FailedPrecondition, match="already has its 3 front ends"):
        fabric.register("fe-7", address("fe-7"), metrics_address("fe-7"), 0.0)
    with pytest.raises(InvalidArgument, match="address='' for front end fe-1 is empty"):
        fabric.register("fe-1", "", "", 0.0)
    with pytest.raises(NotFound, match="unknown routing group 24"):
        fabric.group_serving(24)
    with pytest.raises(InvalidArgument, match="sequence -1 for routing group 0"):
        fabric.report_freshness("fe-1", {0: -1})


# --- the routing table ---


def test_routing_table_is_an_immutable_snapshot_swapped_whole() -> None:
    fabric = started(3)
    table = fabric.routing_table
    assert isinstance(table, RoutingTable)
    with pytest.raises(AttributeError):
        table.version = 99  # type: ignore[misc]
    with pytest.raises(TypeError):
        table.addresses["fe-9"] = "x"  # type: ignore[index]

    fabric.mark_dead("fe-1", "killed")

    assert fabric.routing_table is not table
    assert fabric.routing_table.version == table.version + 1
    assert table.address_of("fe-1") == address("fe-1")  # the old snapshot is untouched
    with pytest.raises(NotFound, match="front end 'fe-1' is not up in routing table"):
        fabric.routing_table.address_of("fe-1")
    homes = Counter(fabric.routing_table.homes)
    assert set(homes) == {"fe-2", "fe-3"}


def test_nothing_changed_means_no_new_table() -> None:
    fabric = started(5)
    version = fabric.routing_table.version
    beat(fabric, 1.0)
    assert fabric.check(1.0) == []
    assert fabric.routing_table.version == version


def test_a_restart_noticed_on_registration_publishes_one_table() -> None:
    fabric = started(5)
    version = fabric.routing_table.version
    changes = fabric.register("fe-3", address("fe-3"), metrics_address("fe-3"), 1.0)
    assert of(changes, TableSwapped) == [TableSwapped(version + 1)]


def test_service_reset_rebalances_primaries_in_one_table() -> None:
    fabric = started(3)
    fabric.mark_dead("fe-1", "reboot")
    register(fabric, ["fe-1"], now=1.0)
    acknowledge(fabric)
    version = fabric.routing_table.version
    changes = fabric.reset(ResetType.SERVICE_RESET)
    assert of(changes, Promotion)
    assert of(changes, TableSwapped) == [TableSwapped(version + 1)]
    p = fabric.placement
    assert p is not None
    assert set(p.primary_counts().values()) == {8}


@pytest.mark.parametrize(("n", "seed"), [(3, 1), (5, 2), (8, 3), (12, 4)])
def test_random_walk_keeps_the_invariants(n: int, seed: int) -> None:
    """A seeded random sequence of failures, returns, drains and resets never leaves a replica
    on a front end that is not up, a served group without 2 live replicas or with a primary
    still catching up, or an older table. Copies and catch-ups are acknowledged at random
    moments, or not at all (their call failed, and they are ordered again)."""
    rng = random.Random(seed)
    fabric = make(n)
    now = 0.0
    version = 0
    for _ in range(300):
        now += INTERVAL
        states = fabric.front_ends()
        running = [fe for fe, s in states.items() if s in (UP, DRAINING)]
        up = [fe for fe, s in states.items() if s is UP]
        absent = [fe for fe in fes(n) if states.get(fe) not in (UP, DRAINING)]
        action = rng.choice(["register", "register", "kill", "drain", "check", "reset"])
        if action == "register" and absent:
            register(fabric, [rng.choice(absent)], now)
        elif action == "kill" and running:
            fabric.mark_dead(rng.choice(running), "chaos")
        elif action == "drain" and up:
            fabric.stop(rng.choice(up), graceful=True, now=now)
        elif action == "reset" and fabric.started and up:
            fabric.reset(rng.choice([ResetType.QUORUM_LOSS_RECOVERY, ResetType.SERVICE_RESET]))
        else:
            beat(fabric, now, skip=[rng.choice(running)] if running and rng.random() < 0.2 else [])
            fabric.check(now)
            fabric.unfinished()
        if rng.random() < 0.6:
            acknowledge(fabric)
        assert fabric.routing_table.version >= version
        version = fabric.routing_table.version
        if fabric.placement is not None:
            assert_consistent(fabric)
            syncing = fabric.catching_up
            for g, r in fabric.placement.items():
                if g in fabric.lost_groups:  # below 2, or every live one still catching up
                    assert r.replica_count < 2 or all((g, fe) in syncing for fe in r.members)
                elif r.primary:
                    assert (g, r.primary) not in syncing


def test_fabric_imports_no_framework() -> None:
    code = (
        "import json, sys\n"
        "import enterprise.fabric\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('grpc', 'ray', 'prometheus_client', 'asyncio'))))\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
