"""The catch-up window (enterprise.fabric): a replica back from a restart gets live writes
before its catch-up lands, so it holds writes past a gap. Until the catch-up is acknowledged
it is never promoted, never made primary by rebalancing, not healthy, and ranked by where
its catch-up started, whatever it reports; a catch-up that failed is ordered again, from the
new primary after a fail-over. Pure, on virtual time (heartbeats and ``check``); the last
test carries the decisions out on real SQLite replica stores."""

from __future__ import annotations

from pathlib import Path

from enterprise.changes import CatchUpTask, Change, CopyTask, GroupQuorumLost, GroupRecovered
from enterprise.fabric import Fabric
from enterprise.local_store import LocalReplicaStore
from enterprise.placement import Promotion
from enterprise.replica import ReplicatingStore
from pool.status import FrontEndState, GroupState
from pool.store import ContactRow
from tests.enterprise.test_fabric import (
    TIMEOUT,
    acknowledge,
    address,
    beat,
    metrics_address,
    of,
    started,
)

FES = ("fe-1", "fe-2", "fe-3")


def replica_store(path: Path) -> ReplicatingStore:
    return ReplicatingStore(lambda user_id: 0, LocalReplicaStore(path))


def back(fabric: Fabric, fe: str, held: dict[int, int], now: float) -> list[Change]:
    return fabric.register(fe, address(fe), metrics_address(fe), now, held)


def crash(fabric: Fabric, fe: str, now: float) -> tuple[float, list[Change]]:
    """``fe`` stops answering heartbeats at ``now``: the fabric notices on its own clock."""
    later = now + TIMEOUT + 0.5
    beat(fabric, later, skip=[fe])
    return later, fabric.check(later)


def returned_while_writes_went_on() -> tuple[Fabric, list[int], float]:
    """fe-3 went down at sequence 50 and came back while the pool moved on to 100: its
    catch-ups are ordered, not acknowledged. The groups it now catches up in."""
    fabric = started(3)
    p = fabric.placement
    assert p is not None
    mine = list(p.replicas_on("fe-3"))
    held = dict.fromkeys(mine, 50)
    for fe in FES:
        fabric.report_freshness(fe, dict.fromkeys(p.replicas_on(fe), 50))
    now, _ = crash(fabric, "fe-3", 0.0)
    for fe in ("fe-1", "fe-2"):
        q = fabric.placement
        assert q is not None
        fabric.report_freshness(fe, dict.fromkeys(q.replicas_on(fe), 100))
    acknowledge(fabric)  # the fail-over's own levelling is done
    now += 1.0
    changes = back(fabric, "fe-3", held, now)
    assert {(t.group, t.to_fe, t.since) for t in of(changes, CatchUpTask)} == {
        (g, "fe-3", 50) for g in mine
    }
    return fabric, mine, now


def test_a_replica_still_catching_up_is_never_promoted_whatever_it_reports() -> None:
    fabric, mine, now = returned_while_writes_went_on()
    # live writes reached it before its catch-up: a replica counting them would say 120
    fabric.report_freshness("fe-3", dict.fromkeys(mine, 120))
    assert all(fabric.catching_up[(g, "fe-3")] == 50 for g in mine)
    p = fabric.placement
    assert p is not None
    victims = [g for g in mine if p[g].primary == "fe-1"]
    assert victims

    now, changes = crash(fabric, "fe-1", now)

    promoted = {c.group: c.new for c in of(changes, Promotion)}
    assert all(promoted[g] == "fe-2" for g in victims)  # the one holding every write
    # fe-3 is brought level by the new primary, from where it really is
    again = {(t.group, t.from_fe, t.to_fe, t.since) for t in of(changes, CatchUpTask)}
    assert {(g, "fe-2", "fe-3", 50) for g in victims} <= again
    assert all(fabric.group_serving(g).ok for g in victims)


def test_until_acknowledged_it_is_not_healthy_nor_given_a_primary_by_rebalancing() -> None:
    fabric, mine, _ = returned_while_writes_went_on()
    status = fabric.status({}, {}, 5.0)
    states = {g.id: g.state for g in status.routing_groups}
    assert all(states[g] is GroupState.DEGRADED for g in mine)
    assert status.extra["replicas_catching_up"] == str(len(mine))
    assert all(fabric.group_serving(g).ok for g in mine)  # served meanwhile, by its primary
    assert not fabric.rebalance()  # fe-3 holds no primary, and gets none yet

    for g in mine:
        fabric.caught_up(g, "fe-3")

    status = fabric.status({}, {}, 6.0)
    assert all(g.state is GroupState.HEALTHY for g in status.routing_groups)
    assert status.extra["replicas_catching_up"] == "0"
    moves = of(fabric.rebalance(), Promotion)
    assert moves
    assert {m.new for m in moves} == {"fe-3"}


def test_once_acknowledged_it_may_be_promoted_again() -> None:
    fabric, mine, now = returned_while_writes_went_on()
    for g in mine:
        fabric.caught_up(g, "fe-3")
    fabric.report_freshness("fe-3", dict.fromkeys(mine, 130))
    fabric.report_freshness("fe-2", dict.fromkeys(mine, 120))
    p = fabric.placement
    assert p is not None
    victims = [g for g in mine if p[g].primary == "fe-1"]

    _, changes = crash(fabric, "fe-1", now)

    promoted = {c.group: c.new for c in of(changes, Promotion)}
    assert all(promoted[g] == "fe-3" for g in victims)


def test_a_failed_catch_up_is_ordered_again_from_the_primary() -> None:
    fabric, mine, _ = returned_while_writes_went_on()
    p = fabric.placement
    assert p is not None

    again = fabric.unfinished()  # their calls failed: the heartbeat rounds order them again

    assert {(t.group, t.from_fe, t.to_fe, t.since) for t in of(again, CatchUpTask)} == {
        (g, p[g].primary, "fe-3", 50) for g in mine
    }
    for g in mine:
        fabric.caught_up(g, "fe-3")
    assert fabric.unfinished() == []


def test_a_group_whose_live_replicas_are_all_catching_up_waits_for_a_caught_up_one() -> None:
    fabric = started(3)
    groups = fabric.routing_groups
    fabric.report_freshness("fe-1", dict.fromkeys(range(groups), 80))
    now, _ = crash(fabric, "fe-2", 0.0)
    now, _ = crash(fabric, "fe-3", now)
    assert len(fabric.lost_groups) == groups  # fe-1 alone holds every group
    now += 1.0
    changes = back(fabric, "fe-2", dict.fromkeys(range(groups), 40), now)
    assert len(of(changes, GroupRecovered)) == groups  # fe-1 serves, fe-2 catches up
    back(fabric, "fe-3", dict.fromkeys(range(groups), 40), now)
    assert len(fabric.catching_up) == 2 * groups

    now, changes = crash(fabric, "fe-1", now)  # before either catch-up landed

    assert not of(changes, Promotion)
    assert len(of(changes, GroupQuorumLost)) == groups
    assert not any(fabric.group_serving(g).ok for g in range(groups))
    fabric.caught_up(0, "fe-2")  # a stale answer: its source is gone
    assert (0, "fe-2") in fabric.catching_up
    assert fabric.unfinished() == []  # nobody to catch up from

    # fe-1 comes back with every write: it serves again, the others catch up from it
    changes = back(fabric, "fe-1", dict.fromkeys(range(groups), 80), now + 1.0)

    recovered = of(changes, GroupRecovered)
    assert len(recovered) == groups
    assert {r.primary for r in recovered} == {"fe-1"}
    tasks = {(t.group, t.to_fe) for t in changes if isinstance(t, CatchUpTask | CopyTask)}
    assert tasks == {(g, fe) for g in range(groups) for fe in ("fe-2", "fe-3")}
    assert all(fabric.group_serving(g).ok for g in range(groups))


def test_writes_during_a_catch_up_then_a_fail_over_lose_no_acknowledged_write(
    tmp_path: Path,
) -> None:
    """The fabric's decisions carried out on three front ends' stores (real SQLite): fe-3
    comes back, live writes reach it before its catch-up, the primary dies inside the
    window; the new primary holds every acknowledged write, and so does fe-3 once levelled."""
    fabric = started(3)
    g = 0
    p = fabric.placement
    assert p is not None
    primary, first, last = p[g].primary, *p[g].secondaries
    stores = {fe: replica_store(tmp_path / f"{fe}.db") for fe in FES}
    acknowledged: dict[int, ContactRow] = {}

    def write(n: int, tag: str) -> None:
        """``n`` writes on the primary, shipped to its live secondaries: acknowledged."""
        q = fabric.placement
        assert q is not None
        home = stores[q[g].primary]
        for i in range(n):
            row = ContactRow(1, len(acknowledged) + 1, 0, f"{tag}{i}")
            home.put_contact(row)
            acknowledged[row.contact_id] = row
        for seq, writes in home.take_pending().values():
            for fe in q[g].secondaries:
                stores[fe].apply_replicated(g, seq - len(writes), seq, writes)

    def report(now: float) -> None:
        for fe, s in stores.items():
            if fabric.state_of(fe) is FrontEndState.UP:
                fabric.report_freshness(fe, {k: d.seq for k, d in s.groups.items()})
        beat(fabric, now)

    write(10, "before")
    report(1.0)
    now, _ = crash(fabric, last, 1.0)
    acknowledge(fabric)
    write(5, "away")  # acknowledged by primary and first only
    report(now)
    local = stores[last].local
    assert local is not None
    local.close()
    stores[last] = replica_store(tmp_path / f"{last}.db")  # it restarts
    held = {k: d.seq for k, d in stores[last].groups.items()}
    assert held[g] == 10
    changes = back(fabric, last, held, now + 1.0)
    assert (g, last) in fabric.catching_up
    write(3, "window")  # live writes reach it before its catch-up lands
    report(now + 1.5)
    assert stores[last].groups[g].seq == 10  # its mark does not move past the gap

    now, changes = crash(fabric, primary, now + 1.5)

    new = fabric.placement
    assert new is not None
    assert new[g].primary == first
    assert {c.new for c in of(changes, Promotion) if c.group == g} == {first}
    assert set(stores[first].groups[g].contacts.values()) == set(acknowledged.values())
    for task in of(changes, CatchUpTask):
        if task.group == g:
            missed = stores[task.from_fe].changes_since(g, task.since)
            assert missed is not None
            seq, writes = missed
            stores[task.to_fe].apply_replicated(g, task.since, seq, writes)
            fabric.caught_up(g, task.to_fe)
    assert set(stores[last].groups[g].contacts.values()) == set(acknowledged.values())
    assert stores[last].groups[g].seq == stores[first].groups[g].seq


def test_a_copy_cut_short_by_a_fail_over_is_made_again_from_the_new_primary() -> None:
    fabric = started(3)
    now, _ = crash(fabric, "fe-3", 0.0)
    acknowledge(fabric)
    changes = back(fabric, "fe-3", {}, now + 1.0)  # its disk is gone: whole copies
    copied = {t.group for t in of(changes, CopyTask) if t.to_fe == "fe-3"}
    assert copied
    assert all(fabric.catching_up[(g, "fe-3")] == -1 for g in copied)
    p = fabric.placement
    assert p is not None
    victims = [g for g in copied if p[g].primary == "fe-1"]

    _, changes = crash(fabric, "fe-1", now + 1.0)

    again = {(t.group, t.from_fe) for t in of(changes, CopyTask) if t.to_fe == "fe-3"}
    assert {(g, "fe-2") for g in victims} <= again  # a whole copy still, never a catch-up
    assert not any(t.to_fe == "fe-3" and t.group in victims for t in of(changes, CatchUpTask))
