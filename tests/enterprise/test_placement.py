"""Routing-group placement: the brick model's invariants for every pool size from 2 to 12,
promotion on failure, rebuilding lost replicas and moving primaries back."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from enterprise.placement import (
    GroupReplicas,
    GroupState,
    Placement,
    Promotion,
    fail_over,
    group_state,
    place,
    rebalance_primaries,
    rebuild,
)

SIZES = list(range(2, 13))


def fes(n: int) -> list[str]:
    return [f"fe-{i}" for i in range(1, n + 1)]


def group_counts(n: int) -> list[int]:
    """The default (8 per FE), and odd numbers around the round boundaries."""
    return sorted({8 * n, 1, 2, n - 1, n, n + 1, 2 * n + 1, 3 * n - 1, 7, 13, 25, 97})


def spread(counts: dict[str, int]) -> int:
    return max(counts.values()) - min(counts.values())


def assert_brick_invariants(placement: Placement, n: int, groups: int, replicas: int = 3) -> None:
    assert list(placement) == list(range(groups))
    assert len(placement) == groups
    for group in placement:
        members = placement[group].members
        assert len(members) == min(replicas, n), (group, members)
        assert len(set(members)) == len(members), (group, members)
        assert set(members) <= set(placement.front_ends)
        assert placement.home_of(group) == placement[group].primary
    assert spread(placement.primary_counts()) <= 1, placement.primary_counts()
    assert spread(placement.replica_counts()) <= 1, placement.replica_counts()
    assert sum(placement.primary_counts().values()) == groups
    assert sum(placement.replica_counts().values()) == groups * min(replicas, n)


# -- place -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_place_keeps_the_brick_invariants(n: int) -> None:
    for groups in group_counts(n):
        placement = place(fes(n), groups)
        assert_brick_invariants(placement, n, groups)
        assert placement == place(fes(n), groups), "same input, same output"
        assert placement.front_ends == tuple(fes(n))


@pytest.mark.parametrize("replicas", [1, 2, 4])
def test_place_with_other_replica_counts(replicas: int) -> None:
    for n in SIZES:
        for groups in group_counts(n):
            assert_brick_invariants(place(fes(n), groups, replicas), n, groups, replicas)


def test_two_front_ends_hold_two_replicas_of_every_group() -> None:
    placement = place(["a", "b"], 16)
    assert {placement[g].members for g in placement} == {("a", "b"), ("b", "a")}
    assert placement.primary_counts() == {"a": 8, "b": 8}


def test_default_layout_of_a_small_pool() -> None:
    placement = place(["a", "b", "c", "d"], 8)
    assert [placement[g] for g in placement] == [
        GroupReplicas("a", ("b", "c")),
        GroupReplicas("b", ("c", "d")),
        GroupReplicas("c", ("d", "a")),
        GroupReplicas("d", ("a", "b")),
        GroupReplicas("a", ("c", "d")),
        GroupReplicas("b", ("d", "a")),
        GroupReplicas("c", ("a", "b")),
        GroupReplicas("d", ("b", "c")),
    ]


@pytest.mark.parametrize("n", [n for n in SIZES if n >= 3])
def test_one_failure_spreads_its_users_over_the_survivors(n: int) -> None:
    # SPEC's N-1 sizing assumes a failed FE's users spread evenly over the others
    placement = place(fes(n), 8 * n)
    for dead in fes(n):
        after, promotions = fail_over(placement, [dead])
        assert len(promotions) == 8
        counts = after.primary_counts()
        del counts[dead]
        assert spread(counts) <= 1, (dead, counts)


def test_helpers() -> None:
    placement = place(["a", "b", "c"], 6)
    assert placement.primaries_on("a") == (0, 3)
    assert placement.replicas_on("a") == tuple(range(6))
    assert placement.home_of(4) == "b"
    assert placement.state_of(4) is GroupState.HEALTHY
    assert placement.lost_groups() == ()
    assert 5 in placement
    assert 6 not in placement
    with pytest.raises(KeyError):
        placement[6]
    with pytest.raises(KeyError):
        placement[-1]
    with pytest.raises(ValueError, match="fe names unknown front end 'z'"):
        placement.primaries_on("z")


def test_placement_is_immutable_and_hashable() -> None:
    placement = place(fes(3), 6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        placement.groups = ()  # type: ignore[misc]
    assert hash(placement) == hash(place(fes(3), 6))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([], 8), r"len\(front_ends\)=0 is too small: expected at least 1"),
        ((["a", "b"], 0), r"groups=0 is too small: expected at least 1"),
        ((["a", "b"], 8, 0), r"replicas=0 is too small: expected at least 1"),
        ((["a", "a"], 8), r"front_ends=\('a', 'a'\): expected each id once"),
        ((["a", ""], 8), r"front_ends contains '': expected non-empty front end ids"),
    ],
)
def test_place_rejects_bad_input(
    args: tuple[list[str], int] | tuple[list[str], int, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        place(*args)


def test_group_replicas_reject_a_front_end_twice() -> None:
    with pytest.raises(ValueError, match="repeat a front end"):
        GroupReplicas("a", ("b", "a"))
    with pytest.raises(ValueError, match="without a primary"):
        GroupReplicas("", ("b",))


def test_a_placement_rejects_replicas_outside_the_pool() -> None:
    with pytest.raises(ValueError, match=r"routing group 0 has a replica on 'z': expected one of"):
        Placement(("a", "b"), (GroupReplicas("a", ("z",)),))


# -- group states ------------------------------------------------------------------------------


def test_group_states_follow_spec() -> None:
    assert group_state(3) is GroupState.HEALTHY
    assert group_state(2) is GroupState.DEGRADED
    assert group_state(1) is GroupState.QUORUM_LOSS
    assert group_state(0) is GroupState.QUORUM_LOSS
    # a two-FE pool: both replicas alive is all of them; one alone is below 2
    assert group_state(2, total=2) is GroupState.HEALTHY
    assert group_state(1, total=2) is GroupState.QUORUM_LOSS
    with pytest.raises(ValueError, match=r"replicas_alive=4 is out of range: expected 0..3"):
        group_state(4)
    with pytest.raises(ValueError, match=r"total=1 is too small"):
        group_state(1, total=1)


# -- fail_over ---------------------------------------------------------------------------------


def test_fail_over_promotes_the_first_secondary_when_all_are_as_fresh() -> None:
    placement = place(["a", "b", "c", "d"], 8)
    after, promotions = fail_over(placement, ["a"])
    assert promotions == [Promotion(0, "a", "b"), Promotion(4, "a", "c")]
    assert after[0] == GroupReplicas("b", ("c",))
    assert after[4] == GroupReplicas("c", ("d",))
    assert after[2] == GroupReplicas("c", ("d",))  # lost a secondary only
    assert after[1] == placement[1]  # untouched
    assert after.replicas_on("a") == ()
    assert after.state_of(0) is GroupState.DEGRADED
    assert after.state_of(1) is GroupState.HEALTHY


def test_fail_over_promotes_the_freshest_live_secondary() -> None:
    placement = place(["a", "b", "c", "d"], 8)
    # group 0 is a/(b, c): c holds a later write than b
    after, promotions = fail_over(placement, ["a"], freshness={(0, "b"): 41, (0, "c"): 42})
    assert promotions[0] == Promotion(0, "a", "c")
    assert after[0] == GroupReplicas("c", ("b",))
    # a dead secondary is never promoted, however fresh
    after, promotions = fail_over(placement, ["a", "b"], freshness={(0, "b"): 99, (0, "c"): 1})
    assert promotions[0] == Promotion(0, "a", "c")
    assert after[0] == GroupReplicas("c")


def test_fail_over_ties_go_to_the_first_listed() -> None:
    placement = Placement(("a", "b", "c"), (GroupReplicas("a", ("c", "b")),))
    _, promotions = fail_over(placement, ["a"], freshness={(0, "b"): 5, (0, "c"): 5})
    assert promotions == [Promotion(0, "a", "c")]


def test_two_failures_leave_groups_of_three_fes_in_quorum_loss() -> None:
    placement = place(fes(5), 40)
    after, promotions = fail_over(placement, ["fe-1", "fe-2"])
    for group in after:
        before = set(placement[group].members)
        alive = before - {"fe-1", "fe-2"}
        assert set(after[group].members) == alive
        assert (
            after.state_of(group)
            is {
                3: GroupState.HEALTHY,
                2: GroupState.DEGRADED,
                1: GroupState.QUORUM_LOSS,
            }[len(alive)]
        )
        assert (placement[group].primary in {"fe-1", "fe-2"}) == any(
            p.group == group for p in promotions
        )
    assert after.lost_groups() == ()
    assert set(after.primary_counts()) == set(fes(5))
    assert after.primary_counts()["fe-1"] == after.primary_counts()["fe-2"] == 0


def test_a_group_losing_every_replica_keeps_an_empty_primary() -> None:
    placement = place(["a", "b", "c", "d"], 8)
    after, promotions = fail_over(placement, {"a", "b", "c"})
    assert after[0] == GroupReplicas("")
    assert after.home_of(0) is None
    assert after.state_of(0) is GroupState.QUORUM_LOSS
    assert 0 not in {p.group for p in promotions}
    assert set(after.lost_groups()) == {
        g for g in placement if set(placement[g].members) <= {"a", "b", "c"}
    }
    # failing more does not bring it back, and is idempotent
    again, more = fail_over(after, {"a", "b", "c"})
    assert again == after
    assert more == []


def test_fail_over_in_steps_equals_fail_over_at_once_when_fresh_alike() -> None:
    placement = place(fes(7), 56)
    for one, two in itertools.permutations(fes(7), 2):
        stepwise, _ = fail_over(fail_over(placement, [one])[0], [two])
        at_once, _ = fail_over(placement, [one, two])
        assert {g: set(stepwise[g].members) for g in stepwise} == {
            g: set(at_once[g].members) for g in at_once
        }


def test_fail_over_rejects_unknown_front_ends() -> None:
    with pytest.raises(ValueError, match="dead names unknown front end 'z': expected one of a, b"):
        fail_over(place(["a", "b"], 4), ["z"])


# -- rebuild -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [n for n in SIZES if n >= 4])
def test_rebuild_restores_three_replicas_on_spares(n: int) -> None:
    placement = place(fes(n), 8 * n)
    dead = "fe-2"
    live = [fe for fe in fes(n) if fe != dead]
    after, _ = fail_over(placement, [dead])
    rebuilt, copies = rebuild(after, live)
    assert len(copies) == len(placement.replicas_on(dead))
    for group in rebuilt:
        members = rebuilt[group].members
        assert len(members) == 3
        assert len(set(members)) == 3, "never two replicas of a group on one FE"
        assert dead not in members
        # only additions: every surviving replica stays where it was, in the same role
        assert members[: len(after[group].members)] == after[group].members
    for group, fe in copies:
        assert fe not in after[group].members
        assert fe in rebuilt[group].secondaries  # copies are secondaries, listed last
    totals = rebuilt.replica_counts()
    del totals[dead]
    assert spread(totals) <= 1, totals


def test_rebuild_on_three_fes_waits_for_the_third() -> None:
    placement = place(["a", "b", "c"], 6)
    after, _ = fail_over(placement, ["c"])
    rebuilt, copies = rebuild(after, ["a", "b"])
    assert copies == []  # no spare: every live FE already holds a replica of every group
    assert rebuilt == after
    back, copies = rebuild(after, ["a", "b", "c"])
    assert sorted(copies) == [(g, "c") for g in range(6)]
    assert all(back[g].secondaries[-1] == "c" for g in back)
    assert all(len(set(back[g].members)) == 3 for g in back)
    assert back.primaries_on("c") == ()  # until rebalance_primaries hands some back


def test_rebuild_picks_the_least_loaded_spare() -> None:
    placement = Placement(
        ("a", "b", "c", "d", "e"),
        (
            GroupReplicas("a", ("b",)),  # needs one more: c, d or e
            GroupReplicas("c", ("d", "e")),
            GroupReplicas("d", ("c",)),
        ),
    )
    rebuilt, copies = rebuild(placement, ["a", "b", "c", "d", "e"])
    # e holds 1 replica, c and d hold 2: group 0 goes to e; group 2 then to the least loaded
    # spare among a (1 replica, 1 primary), b (1, 0) and e (2 by then): b
    assert copies == [(0, "e"), (2, "b")]
    assert rebuilt[0] == GroupReplicas("a", ("b", "e"))
    assert rebuilt[2] == GroupReplicas("d", ("c", "b"))


def test_rebuild_leaves_a_group_in_quorum_loss_alone() -> None:
    placement = Placement(("a", "b", "c"), (GroupReplicas(""), GroupReplicas("a", ("b",))))
    rebuilt, copies = rebuild(placement, ["a", "b", "c"])
    assert rebuilt[0] == GroupReplicas("")
    assert copies == [(1, "c")]


def test_rebuild_needs_fail_over_first() -> None:
    placement = place(["a", "b", "c", "d"], 8)
    with pytest.raises(ValueError, match="replica on 'a', which is not live"):
        rebuild(placement, ["b", "c", "d"])
    with pytest.raises(ValueError, match="live names unknown front end 'z'"):
        rebuild(placement, ["a", "b", "c", "d", "z"])


# -- rebalance_primaries -----------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_an_fe_that_comes_back_gets_its_share_of_primaries_again(n: int) -> None:
    placement = place(fes(n), 8 * n)
    down = "fe-1"
    others = [fe for fe in fes(n) if fe != down]
    after, _ = fail_over(placement, [down])
    if n == 3:
        # no spare while it is down; with n >= 4 the comeback races the rebuild (see below)
        assert rebuild(after, others) == (after, [])
    back, copies = rebuild(after, fes(n))
    assert {fe for _, fe in copies} == {down}
    balanced, moves = rebalance_primaries(back, fes(n))
    assert spread(balanced.primary_counts()) <= 1, balanced.primary_counts()
    # only roles change: every group keeps the same set of replicas
    for group in balanced:
        assert set(balanced[group].members) == set(back[group].members)
    for move in moves:
        assert move.new in back[move.group].members
    assert len(balanced.primaries_on(down)) in (7, 8, 9)
    # already balanced: nothing to do
    assert rebalance_primaries(balanced, fes(n)) == (balanced, [])


def test_an_fe_back_after_the_rebuild_holds_nothing_to_promote() -> None:
    # rebuild already put the third replicas on the other FEs: the returned FE is a spare
    # that gets new groups' replicas only when something else fails (replicas never move)
    placement = place(fes(5), 40)
    after, _ = fail_over(placement, ["fe-1"])
    after, _ = rebuild(after, fes(5)[1:])
    back, copies = rebuild(after, fes(5))
    assert copies == []
    assert rebalance_primaries(back, fes(5)) == (back, [])
    assert back.replicas_on("fe-1") == ()


def test_rebalance_follows_a_chain_when_no_direct_swap_exists() -> None:
    # a holds 2 primaries, c none; c holds no replica of a's groups, so a hands one to b and
    # b hands one of its own to c
    placement = Placement(
        ("a", "b", "c"),
        (
            GroupReplicas("a", ("b",)),
            GroupReplicas("a", ("b",)),
            GroupReplicas("b", ("c",)),
        ),
    )
    balanced, moves = rebalance_primaries(placement, ["a", "b", "c"])
    assert moves == [Promotion(0, "a", "b"), Promotion(2, "b", "c")]
    assert balanced.primary_counts() == {"a": 1, "b": 1, "c": 1}
    assert balanced[0] == GroupReplicas("b", ("a",))
    assert balanced[2] == GroupReplicas("c", ("b",))


def test_rebalance_does_what_the_replicas_allow() -> None:
    # c holds no replica at all: it cannot take a primary
    placement = Placement(("a", "b", "c"), (GroupReplicas("a", ("b",)), GroupReplicas("a", ("b",))))
    balanced, moves = rebalance_primaries(placement, ["a", "b", "c"])
    assert balanced.primary_counts() == {"a": 1, "b": 1, "c": 0}
    assert moves == [Promotion(0, "a", "b")]
