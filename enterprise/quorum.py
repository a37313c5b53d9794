"""Pool-level quorum of an Enterprise pool (SPEC section 2, "Pool quorum").

A *pool* is 2 to 12 Front End (FE) servers. Two tables of SPEC decide whether it may run:

* the **first-start** table: how many FEs must be up before a new pool starts for the first
  time (and, as guidance only, before every later start);
* the **functional** table: how many FEs must stay up for the pool to work at all. Below it
  every remaining FE stops all services (pool-level quorum loss). For 8 to 12 FEs only the
  *first* FEs count: "first" is the order in which servers first came up when the pool was
  created (the ``start_order`` argument below).

Both are encoded literally, as SPEC asks, not derived from a majority formula: the back-end
database acts as a witness vote in pools with an even number of seed servers, which is why
e.g. 4 FEs need only 2. This module is pure: no framework, no I/O, no clock.

Pool quorum states (``QuorumState``) and the transitions a pool goes through, as recorded by
whoever holds the pool's state (``evaluate`` itself is a pure function)::

    WAITING_FOR_FIRST_START --(first-start table met)----------> HAS_QUORUM
    HAS_QUORUM              --(below the functional table)-----> LOST
    LOST                    --(functional table met again)-----> HAS_QUORUM

``evaluate`` never answers ``LOST`` before the first start nor ``WAITING_FOR_FIRST_START``
after it.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

MIN_POOL_SIZE: Final = 2
MAX_POOL_SIZE: Final = 12

#: SPEC "must be running" for a new pool's first start, by number of FEs in the pool.
FIRST_START_NEEDED: Final[Mapping[int, int]] = MappingProxyType(
    {2: 1, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5, 8: 6, 9: 7, 10: 8, 11: 9, 12: 10}
)


@dataclass(frozen=True, slots=True)
class FunctionalRule:
    """One row of the functional table: ``needed`` FEs must run, counted only among the first
    ``among_first`` FEs of the start order when that is set (``None``: any FEs count)."""

    needed: int
    among_first: int | None = None


#: SPEC "must be running" for the pool to function at all, one entry per pool size.
FUNCTIONAL_RULES: Final[Mapping[int, FunctionalRule]] = MappingProxyType(
    {
        2: FunctionalRule(needed=1),
        3: FunctionalRule(needed=2),
        4: FunctionalRule(needed=2),
        5: FunctionalRule(needed=3),
        6: FunctionalRule(needed=3),
        7: FunctionalRule(needed=4),
        8: FunctionalRule(needed=4, among_first=7),
        9: FunctionalRule(needed=4, among_first=7),
        10: FunctionalRule(needed=5, among_first=9),
        11: FunctionalRule(needed=5, among_first=9),
        12: FunctionalRule(needed=5, among_first=9),
    }
)

#: SPEC: at least 3 FEs must run when users are first moved into a pool.
MIN_FRONT_ENDS_FOR_FIRST_USER_MOVE: Final = 3


class QuorumState(enum.Enum):
    """Where a pool stands with respect to its quorum (transitions: see the module docstring)."""

    WAITING_FOR_FIRST_START = "waiting_for_first_start"
    HAS_QUORUM = "has_quorum"
    LOST = "lost"


#: The allowed changes of ``QuorumState`` (staying in the same state is always allowed).
TRANSITIONS: Final[Mapping[QuorumState, frozenset[QuorumState]]] = MappingProxyType(
    {
        QuorumState.WAITING_FOR_FIRST_START: frozenset({QuorumState.HAS_QUORUM}),
        QuorumState.HAS_QUORUM: frozenset({QuorumState.LOST}),
        QuorumState.LOST: frozenset({QuorumState.HAS_QUORUM}),
    }
)

_PREFIX: Final[Mapping[QuorumState, str]] = MappingProxyType(
    {
        QuorumState.WAITING_FOR_FIRST_START: "waiting for first start",
        QuorumState.HAS_QUORUM: "pool has quorum",
        QuorumState.LOST: "pool quorum lost",
    }
)


@dataclass(frozen=True, slots=True)
class QuorumVerdict:
    """The answer of ``evaluate``.

    ``running`` counts every FE up now; ``needed`` is the table's number; ``among_first`` is
    set when only the first FEs of the start order count, and then ``running_among_first`` is
    how many of those are up. ``detail`` is one line for a person, e.g.
    ``"pool quorum lost: 2 of 5 front ends running, 3 needed"``.
    """

    state: QuorumState
    running: int
    needed: int
    among_first: int | None
    running_among_first: int | None
    detail: str

    @property
    def has_quorum(self) -> bool:
        return self.state is QuorumState.HAS_QUORUM


def _check_pool_size(pool_size: int) -> None:
    if not (MIN_POOL_SIZE <= pool_size <= MAX_POOL_SIZE):
        raise ValueError(
            f"pool_size={pool_size!r} is out of range: expected an Enterprise pool of "
            f"{MIN_POOL_SIZE}..{MAX_POOL_SIZE} front ends"
        )


def first_start_needed(pool_size: int) -> int:
    """FEs that must be running for a new pool of ``pool_size`` FEs to start the first time.

    Raises ValueError unless 2 <= pool_size <= 12.
    """
    _check_pool_size(pool_size)
    return FIRST_START_NEEDED[pool_size]


def functional_rule(pool_size: int) -> FunctionalRule:
    """The functional-table row for a pool of ``pool_size`` FEs (ValueError outside 2..12)."""
    _check_pool_size(pool_size)
    return FUNCTIONAL_RULES[pool_size]


def min_front_ends_for_first_user_move() -> int:
    """FEs that must run when users are first moved into a pool (SPEC: 3)."""
    return MIN_FRONT_ENDS_FOR_FIRST_USER_MOVE


def two_fe_restart_ok(last_down: str, first_up: str) -> bool:
    """Whether a two-FE pool that went fully down may restart without quorum-loss recovery.

    SPEC: such a pool must come back in reverse order, i.e. the FE that went down last must be
    the first one up; otherwise an operator must run quorum-loss recovery.
    """
    for name, value in (("last_down", last_down), ("first_up", first_up)):
        if not value:
            raise ValueError(f"{name}={value!r} is empty: expected a front end id")
    return last_down == first_up


def _check_membership(pool_size: int, start_order: Sequence[str], up: frozenset[str]) -> None:
    seen: set[str] = set()
    for fe in start_order:
        if fe in seen:
            raise ValueError(
                f"start_order names front end {fe!r} twice: expected each front end once, "
                "in the order they first came up"
            )
        seen.add(fe)
    if len(seen) > pool_size:
        raise ValueError(
            f"start_order names {len(seen)} front ends: expected at most pool_size={pool_size}"
        )
    unlisted = sorted(up - seen)
    if unlisted:
        raise ValueError(
            f"running names front end {unlisted[0]!r}, which is not in start_order: expected "
            "every front end that is up to be listed in the order it first came up"
        )


def evaluate(
    pool_size: int,
    start_order: Sequence[str],
    running: Collection[str],
    *,
    ever_started: bool,
) -> QuorumVerdict:
    """Decide the pool's quorum state.

    ``start_order`` lists FE ids in the order they first came up when the pool was created (it
    may be shorter than ``pool_size`` while not every FE has ever come up: the caller appends
    an FE when it first comes up); ``running`` is the set of FEs up now, all of them in
    ``start_order``; ``ever_started`` says whether the pool has completed its first start.

    Before the first start the first-start table applies: ``WAITING_FOR_FIRST_START`` until
    enough FEs run, then ``HAS_QUORUM`` (the caller then records the first start). After it the
    functional table applies: ``HAS_QUORUM`` or ``LOST``.

    Raises ValueError when pool_size is outside 2..12, start_order repeats an id or is longer
    than the pool, or a running FE is not in start_order.
    """
    _check_pool_size(pool_size)
    up = frozenset(running)
    _check_membership(pool_size, start_order, up)

    among_first: int | None = None
    running_among_first: int | None = None
    if not ever_started:
        needed = FIRST_START_NEEDED[pool_size]
        met = len(up) >= needed
        state = QuorumState.HAS_QUORUM if met else QuorumState.WAITING_FOR_FIRST_START
    else:
        rule = FUNCTIONAL_RULES[pool_size]
        needed = rule.needed
        among_first = rule.among_first
        if among_first is None:
            met = len(up) >= needed
        else:
            running_among_first = sum(1 for fe in start_order[:among_first] if fe in up)
            met = running_among_first >= needed
        state = QuorumState.HAS_QUORUM if met else QuorumState.LOST

    detail = f"{_PREFIX[state]}: {len(up)} of {pool_size} front ends running, {needed}"
    if among_first is None:
        detail += " needed"
    else:
        detail += f" of the first {among_first} needed ({running_among_first} of them running)"
    return QuorumVerdict(
        state=state,
        running=len(up),
        needed=needed,
        among_first=among_first,
        running_among_first=running_among_first,
        detail=detail,
    )
