"""Pool quorum: both SPEC tables, entry by entry, for every pool size from 2 to 12.

The expected values are copied from SPEC section 2 in SPEC's own shape (a header row and a
value row; ranges like "8-9" and phrases like "any 4 of the first 7"), so that a slip in
``enterprise.quorum``'s literal tables does not hide behind the same slip here.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from enterprise.quorum import (
    FIRST_START_NEEDED,
    FUNCTIONAL_RULES,
    TRANSITIONS,
    FunctionalRule,
    QuorumState,
    QuorumVerdict,
    evaluate,
    first_start_needed,
    functional_rule,
    min_front_ends_for_first_user_move,
    two_fe_restart_ok,
)

SIZES = list(range(2, 13))

# SPEC: "Servers that must be running for a new pool's first start"
SPEC_FIRST_START_HEADER = "| FEs in pool | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12 |"
SPEC_FIRST_START_VALUES = "| must be running | 1 | 3 | 3 | 4 | 5 | 5 | 6 | 7 | 8 | 9 | 10 |"

# SPEC: "Servers that must be running for the pool to function at all"
SPEC_FUNCTIONAL_ROWS = {
    "2": "1",
    "3-4": "any 2",
    "5-6": "any 3",
    "7": "any 4",
    "8-9": "any 4 of the first 7",
    "10-12": "any 5 of the first 9",
}


def spec_first_start() -> dict[int, int]:
    def cells(row: str) -> list[int]:
        return [int(c) for c in row.strip("|").split("|")[1:]]

    return dict(zip(cells(SPEC_FIRST_START_HEADER), cells(SPEC_FIRST_START_VALUES), strict=True))


def spec_functional() -> dict[int, tuple[int, int | None]]:
    table: dict[int, tuple[int, int | None]] = {}
    for sizes, text in SPEC_FUNCTIONAL_ROWS.items():
        low, _, high = sizes.partition("-")
        match = re.fullmatch(r"(?:any )?(\d+)(?: of the first (\d+))?", text)
        assert match, text
        needed, first = int(match[1]), match[2]
        for n in range(int(low), int(high or low) + 1):
            table[n] = (needed, None if first is None else int(first))
    return table


def fes(n: int) -> list[str]:
    """Front-end ids in the order they first came up."""
    return [f"fe-{i}" for i in range(1, n + 1)]


# -- the tables --------------------------------------------------------------------------------


def test_spec_copies_cover_every_pool_size() -> None:
    assert sorted(spec_first_start()) == SIZES
    assert sorted(spec_functional()) == SIZES


def test_first_start_table_matches_spec_for_every_size() -> None:
    expected = spec_first_start()
    assert dict(FIRST_START_NEEDED) == expected
    for n in SIZES:
        assert first_start_needed(n) == expected[n], n


def test_functional_table_matches_spec_for_every_size() -> None:
    expected = spec_functional()
    assert sorted(FUNCTIONAL_RULES) == SIZES
    for n in SIZES:
        rule = functional_rule(n)
        assert (rule.needed, rule.among_first) == expected[n], n
        assert FUNCTIONAL_RULES[n] == FunctionalRule(*expected[n])


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        FIRST_START_NEEDED[13] = 11  # type: ignore[index]
    with pytest.raises(TypeError):
        FUNCTIONAL_RULES[13] = FunctionalRule(6)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        FUNCTIONAL_RULES[2].needed = 2  # type: ignore[misc]


# -- first start -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_first_start_waits_below_the_table_and_starts_at_it(n: int) -> None:
    needed = spec_first_start()[n]
    order = fes(n)
    for up in range(n + 1):
        # before the first start only the FEs that came up so far are in the start order
        verdict = evaluate(n, order[:up], order[:up], ever_started=False)
        assert verdict.needed == needed
        assert verdict.running == up
        assert verdict.among_first is None
        assert verdict.running_among_first is None
        if up < needed:
            assert verdict.state is QuorumState.WAITING_FOR_FIRST_START, (n, up)
            assert not verdict.has_quorum
        else:
            assert verdict.state is QuorumState.HAS_QUORUM, (n, up)
            assert verdict.has_quorum


def test_first_start_ignores_the_first_n_rule() -> None:
    # 10 FEs, 8 up, none of them among the first 9 of the seed order: the first start only
    # counts heads (the functional table's "first 9" applies once the pool has started)
    order = fes(10)
    verdict = evaluate(10, order, [*order[2:9], order[9]], ever_started=False)
    assert verdict.state is QuorumState.HAS_QUORUM


def test_first_start_messages() -> None:
    order = fes(5)
    assert (
        evaluate(5, order, order[:2], ever_started=False).detail
        == "waiting for first start: 2 of 5 front ends running, 4 needed"
    )
    assert (
        evaluate(5, order, order[:4], ever_started=False).detail
        == "pool has quorum: 4 of 5 front ends running, 4 needed"
    )


# -- functional table --------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_functional_boundary_for_every_size(n: int) -> None:
    needed, first = spec_functional()[n]
    order = fes(n)
    below = evaluate(n, order, order[: needed - 1], ever_started=True)
    at = evaluate(n, order, order[:needed], ever_started=True)
    everyone = evaluate(n, order, order, ever_started=True)
    nobody = evaluate(n, order, [], ever_started=True)
    assert below.state is QuorumState.LOST
    assert nobody.state is QuorumState.LOST
    assert at.state is QuorumState.HAS_QUORUM
    assert everyone.state is QuorumState.HAS_QUORUM
    for verdict in (below, at, everyone, nobody):
        assert verdict.needed == needed
        assert verdict.among_first == first
    if first is None:
        assert at.running_among_first is None
    else:
        assert at.running_among_first == needed
        assert below.running_among_first == needed - 1
        assert everyone.running_among_first == first


@pytest.mark.parametrize("n", [n for n in SIZES if spec_functional()[n][1] is None])
def test_any_front_ends_count_where_no_first_rule(n: int) -> None:
    needed, _ = spec_functional()[n]
    order = fes(n)
    # the last ones to have come up count as much as the first ones
    assert evaluate(n, order, order[-needed:], ever_started=True).has_quorum
    if needed > 1:
        assert not evaluate(n, order, order[-(needed - 1) :], ever_started=True).has_quorum


@pytest.mark.parametrize("n", [8, 9, 10, 11, 12])
def test_only_the_first_front_ends_count_from_8(n: int) -> None:
    needed, first = spec_functional()[n]
    assert first is not None
    order = fes(n)
    late = order[first:]  # every FE that came up after the first `first`
    short = evaluate(n, order, [*order[: needed - 1], *late], ever_started=True)
    assert short.state is QuorumState.LOST
    assert short.running == needed - 1 + len(late)
    assert short.running_among_first == needed - 1
    enough = evaluate(n, order, [*order[first - needed : first]], ever_started=True)
    assert enough.state is QuorumState.HAS_QUORUM
    assert enough.running_among_first == needed


def test_8_front_ends_4_running_but_3_of_the_first_7_is_lost() -> None:
    order = fes(8)
    verdict = evaluate(8, order, ["fe-1", "fe-2", "fe-3", "fe-8"], ever_started=True)
    assert verdict == QuorumVerdict(
        state=QuorumState.LOST,
        running=4,
        needed=4,
        among_first=7,
        running_among_first=3,
        detail=(
            "pool quorum lost: 4 of 8 front ends running, 4 of the first 7 needed "
            "(3 of them running)"
        ),
    )


def test_10_front_ends_5_running_but_4_of_the_first_9_is_lost() -> None:
    # (6 running with only 4 of the first 9 cannot happen with 10 FEs: just one is not among
    # the first 9; see 11 and 12 below)
    order = fes(10)
    running = ["fe-2", "fe-4", "fe-6", "fe-8", "fe-10"]
    lost = evaluate(10, order, running, ever_started=True)
    assert lost == QuorumVerdict(
        state=QuorumState.LOST,
        running=5,
        needed=5,
        among_first=9,
        running_among_first=4,
        detail=(
            "pool quorum lost: 5 of 10 front ends running, 5 of the first 9 needed "
            "(4 of them running)"
        ),
    )
    assert evaluate(10, order, [*running, "fe-9"], ever_started=True).has_quorum


def test_11_front_ends_6_running_but_4_of_the_first_9_is_lost() -> None:
    order = fes(11)
    running = ["fe-1", "fe-2", "fe-3", "fe-4", "fe-10", "fe-11"]
    lost = evaluate(11, order, running, ever_started=True)
    assert lost.state is QuorumState.LOST
    assert lost.detail == (
        "pool quorum lost: 6 of 11 front ends running, 5 of the first 9 needed (4 of them running)"
    )
    assert evaluate(11, order, [*running, "fe-9"], ever_started=True).has_quorum


def test_12_front_ends_7_running_but_4_of_the_first_9_is_lost() -> None:
    order = fes(12)
    running = ["fe-1", "fe-3", "fe-5", "fe-7", "fe-10", "fe-11", "fe-12"]
    assert evaluate(12, order, running, ever_started=True).state is QuorumState.LOST
    assert evaluate(12, order, [*running, "fe-9"], ever_started=True).has_quorum


def test_order_is_the_start_order_not_the_names() -> None:
    # fe-8 came up first: it is among the first 7, fe-7 (the 8th to come up) is not
    order = ["fe-8", "fe-1", "fe-2", "fe-3", "fe-4", "fe-5", "fe-6", "fe-7"]
    assert evaluate(8, order, ["fe-8", "fe-1", "fe-2", "fe-3"], ever_started=True).has_quorum
    assert not evaluate(8, order, ["fe-7", "fe-1", "fe-2", "fe-3"], ever_started=True).has_quorum


def test_a_start_order_shorter_than_the_first_n() -> None:
    # an 8-FE pool first started with 6 up; the other two never came up yet
    order = fes(6)
    verdict = evaluate(8, order, order[:4], ever_started=True)
    assert verdict.has_quorum
    assert verdict.detail == (
        "pool has quorum: 4 of 8 front ends running, 4 of the first 7 needed (4 of them running)"
    )


def test_functional_messages() -> None:
    order = fes(5)
    assert (
        evaluate(5, order, order[:2], ever_started=True).detail
        == "pool quorum lost: 2 of 5 front ends running, 3 needed"
    )
    assert (
        evaluate(5, order, order[:3], ever_started=True).detail
        == "pool has quorum: 3 of 5 front ends running, 3 needed"
    )


def test_a_running_front_end_named_twice_counts_once() -> None:
    order = fes(5)
    verdict = evaluate(5, order, ["fe-1", "fe-1", "fe-2"], ever_started=True)
    assert verdict.running == 2
    assert verdict.state is QuorumState.LOST


def test_a_pool_goes_through_allowed_transitions_only() -> None:
    order = fes(8)
    steps = [
        (order[:3], False),
        (order[:6], False),  # first start
        (order, True),
        (order[4:], True),  # 4 up, only 3 of the first 7: lost
        (order[3:], True),  # fe-4 back: 4 of the first 7
        (order[:3], True),
    ]
    states = [evaluate(8, order, up, ever_started=started).state for up, started in steps]
    assert states == [
        QuorumState.WAITING_FOR_FIRST_START,
        QuorumState.HAS_QUORUM,
        QuorumState.HAS_QUORUM,
        QuorumState.LOST,
        QuorumState.HAS_QUORUM,
        QuorumState.LOST,
    ]
    for old, new in itertools.pairwise(states):
        assert new is old or new in TRANSITIONS[old], (old, new)
    assert set(TRANSITIONS) == set(QuorumState)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 0, 1, 13, 100])
def test_pool_size_out_of_range(bad: int) -> None:
    message = rf"pool_size={bad} is out of range: expected .*2\.\.12 front ends"
    with pytest.raises(ValueError, match=message):
        first_start_needed(bad)
    with pytest.raises(ValueError, match=message):
        functional_rule(bad)
    with pytest.raises(ValueError, match=message):
        evaluate(bad, [], [], ever_started=False)


def test_start_order_repeats_an_id() -> None:
    with pytest.raises(ValueError, match=r"start_order names front end 'fe-2' twice"):
        evaluate(5, ["fe-1", "fe-2", "fe-2"], [], ever_started=True)


def test_start_order_longer_than_the_pool() -> None:
    with pytest.raises(ValueError, match=r"names 4 front ends: expected at most pool_size=3"):
        evaluate(3, fes(4), [], ever_started=True)


def test_a_running_front_end_must_be_in_the_start_order() -> None:
    # every FE that is up has come up, so it has its place in the start order
    with pytest.raises(ValueError, match=r"running names front end 'fe-9', which is not in"):
        evaluate(8, fes(7), ["fe-1", "fe-9"], ever_started=True)


# -- the other rules ---------------------------------------------------------------------------


def test_first_user_move_needs_3_front_ends() -> None:
    assert min_front_ends_for_first_user_move() == 3


def test_two_fe_pool_restarts_in_reverse_order() -> None:
    # fe-1 went down, then fe-2: fe-2 must be the first back
    assert two_fe_restart_ok(last_down="fe-2", first_up="fe-2")
    assert not two_fe_restart_ok(last_down="fe-2", first_up="fe-1")
    with pytest.raises(ValueError, match="first_up='' is empty"):
        two_fe_restart_ok("fe-2", "")


def test_verdict_is_frozen() -> None:
    verdict = evaluate(2, fes(2), fes(2), ever_started=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.running = 0  # type: ignore[misc]


def test_modules_import_no_framework() -> None:
    root = Path(__file__).resolve().parents[2]
    code = (
        "import json, sys\n"
        "import enterprise.quorum, enterprise.placement\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('grpc', 'ray', 'prometheus_client', 'asyncio'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
