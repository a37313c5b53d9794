"""Routing groups and their replicas on the front ends of a pool (SPEC section 2, "brick model").

Terms:

* a **routing group** is a set of users fixed at provisioning; groups are numbered 0..G-1;
* each group has up to 3 **replicas** of its users' persistent data, each on a different front
  end (FE): one **primary** and the **secondaries** (fewer in a pool of fewer than 3 FEs);
* the FE holding the primary is the group's **home**: its users register there;
* when the primary's FE fails a secondary is **promoted** (``fail_over``); a lost replica is
  copied again onto a spare FE (``rebuild``), a live FE that holds no replica of that group.

Everything here is pure and deterministic: same input, same output, no I/O. A ``Placement`` is
immutable; every operation returns a new one, so a pool can build the next table off the hot
path and swap it in with one assignment.

Routing group states (``group_state``), from SPEC's table::

    replicas alive      state
    all (3)             HEALTHY
    2                   DEGRADED        full service (after re-registering if promoted)
    1 or 0              QUORUM_LOSS     no service until replicas return or an operator
                                        runs quorum-loss recovery from the back-end backup
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

#: SPEC: each routing group has 3 replicas (1 primary, 2 secondaries).
REPLICAS: Final = 3
#: Fewer live replicas than this is routing-group quorum loss.
MIN_REPLICAS_FOR_SERVICE: Final = 2


class GroupState(enum.Enum):
    """The state of one routing group, by how many of its replicas are alive."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    QUORUM_LOSS = "quorum_loss"


def group_state(replicas_alive: int, total: int = REPLICAS) -> GroupState:
    """The state of a group with ``replicas_alive`` of its ``total`` replicas alive.

    All alive is HEALTHY; fewer than 2 alive is QUORUM_LOSS whatever ``total`` is (so a group
    of a two-FE pool, with 2 replicas, is in quorum loss with 1 alive); anything between is
    DEGRADED. Raises ValueError unless total >= 2 and 0 <= replicas_alive <= total.
    """
    if total < MIN_REPLICAS_FOR_SERVICE:
        raise ValueError(f"total={total!r} is too small: expected at least 2 replicas")
    if not (0 <= replicas_alive <= total):
        raise ValueError(f"replicas_alive={replicas_alive!r} is out of range: expected 0..{total}")
    if replicas_alive < MIN_REPLICAS_FOR_SERVICE:
        return GroupState.QUORUM_LOSS
    if replicas_alive == total:
        return GroupState.HEALTHY
    return GroupState.DEGRADED


@dataclass(frozen=True, slots=True)
class GroupReplicas:
    """Where one group's replicas are. ``primary`` is ``""`` (and there are no secondaries)
    when the group has no live replica left. The order of ``secondaries`` is the promotion
    order when they are equally up to date."""

    primary: str
    secondaries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.primary and self.secondaries:
            raise ValueError(
                f"secondaries={self.secondaries!r} without a primary: expected a group with "
                "secondaries to have a primary (promote one)"
            )
        if any(not fe for fe in self.secondaries):
            raise ValueError(f"secondaries={self.secondaries!r}: expected non-empty ids")
        members = self.members
        if len(set(members)) != len(members):
            raise ValueError(
                f"replicas {members!r} repeat a front end: expected each on a different one"
            )

    @property
    def members(self) -> tuple[str, ...]:
        """Every FE holding a replica, primary first."""
        return ((self.primary,) if self.primary else ()) + self.secondaries

    @property
    def replica_count(self) -> int:
        return len(self.secondaries) + (1 if self.primary else 0)


@dataclass(frozen=True, slots=True)
class Promotion:
    """Group ``group``'s primary moved from FE ``old`` to FE ``new`` (its users re-register)."""

    group: int
    old: str
    new: str


def _unique_ids(ids: Collection[str], name: str) -> tuple[str, ...]:
    """``ids`` without repeats, first occurrence first; ValueError on an empty id."""
    out: dict[str, None] = {}
    for fe in ids:
        if not isinstance(fe, str) or not fe:
            raise ValueError(f"{name} contains {fe!r}: expected non-empty front end ids")
        out[fe] = None
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Placement(Mapping[int, GroupReplicas]):
    """Routing group -> its replicas, for groups 0..len(groups)-1 of a pool of ``front_ends``.

    Invariant (checked): every replica is on one of ``front_ends``. ``front_ends`` is the whole
    pool, including FEs that are down and hold nothing now.
    """

    front_ends: tuple[str, ...]
    groups: tuple[GroupReplicas, ...]

    def __post_init__(self) -> None:
        if _unique_ids(self.front_ends, "front_ends") != self.front_ends:
            raise ValueError(f"front_ends={self.front_ends!r}: expected each id once")
        pool = set(self.front_ends)
        for group, replicas in enumerate(self.groups):
            for fe in replicas.members:
                if fe not in pool:
                    raise ValueError(
                        f"routing group {group} has a replica on {fe!r}: expected one of "
                        f"{', '.join(self.front_ends)}"
                    )

    def __getitem__(self, group: int) -> GroupReplicas:
        if not (0 <= group < len(self.groups)):
            raise KeyError(group)
        return self.groups[group]

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.groups)))

    def __len__(self) -> int:
        return len(self.groups)

    def home_of(self, group: int) -> str | None:
        """The FE holding ``group``'s primary, or None when the group has no live replica
        (quorum loss: it needs quorum-loss recovery). KeyError for an unknown group."""
        return self[group].primary or None

    def primaries_on(self, fe: str) -> tuple[int, ...]:
        """The groups whose primary ``fe`` holds, in group order."""
        self.check_known((fe,), "fe")
        return tuple(g for g, r in enumerate(self.groups) if r.primary == fe)

    def replicas_on(self, fe: str) -> tuple[int, ...]:
        """The groups of which ``fe`` holds any replica (primary or secondary), in order."""
        self.check_known((fe,), "fe")
        return tuple(g for g, r in enumerate(self.groups) if fe in r.members)

    def primary_counts(self) -> dict[str, int]:
        """Primaries per FE, for every FE of the pool (0 included)."""
        counts = dict.fromkeys(self.front_ends, 0)
        for r in self.groups:
            if r.primary:
                counts[r.primary] += 1
        return counts

    def replica_counts(self) -> dict[str, int]:
        """Replicas (primaries and secondaries) per FE, for every FE of the pool."""
        counts = dict.fromkeys(self.front_ends, 0)
        for r in self.groups:
            for fe in r.members:
                counts[fe] += 1
        return counts

    def state_of(self, group: int, replicas: int = REPLICAS) -> GroupState:
        """``group``'s state, out of ``min(replicas, pool size)`` replicas."""
        return group_state(self[group].replica_count, min(replicas, len(self.front_ends)))

    def lost_groups(self) -> tuple[int, ...]:
        """Groups with no live replica at all."""
        return tuple(g for g, r in enumerate(self.groups) if not r.primary)

    def check_known(self, ids: Collection[str], name: str) -> tuple[str, ...]:
        """``ids`` without repeats; ValueError naming ``name`` if one is not in the pool."""
        unique = _unique_ids(ids, name)
        pool = set(self.front_ends)
        for fe in unique:
            if fe not in pool:
                raise ValueError(
                    f"{name} names unknown front end {fe!r}: expected one of "
                    f"{', '.join(self.front_ends)}"
                )
        return unique


def _check_count(name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"{name}={value!r} is too small: expected at least {low}")


def _distinct_primaries(candidates: Sequence[Sequence[int]]) -> list[int]:
    """One candidate per group, no two groups the same (a bipartite matching, Kuhn's method).

    Candidates are tried in order, so the first one wins whenever it is free.
    """
    owner: dict[int, int] = {}  # FE index -> group

    def claim(group: int, seen: set[int]) -> bool:
        for fe in candidates[group]:
            if fe in seen:
                continue
            seen.add(fe)
            if fe not in owner or claim(owner[fe], seen):
                owner[fe] = group
                return True
        return False

    for group in range(len(candidates)):
        if not claim(group, set()):  # pragma: no cover - impossible by Hall's theorem
            raise AssertionError(f"no distinct primary for group {group} of {candidates!r}")
    chosen = [0] * len(candidates)
    for fe, group in owner.items():
        chosen[group] = fe
    return chosen


def place(front_ends: Sequence[str], groups: int, replicas: int = REPLICAS) -> Placement:
    """Lay out ``groups`` routing groups over ``front_ends`` (in the given order).

    Each group gets ``k = min(replicas, len(front_ends))`` replicas on distinct FEs, one of them
    the primary. Guarantees: primaries per FE differ by at most 1, and so do replicas per FE.

    How: groups come in *rounds* of one group per FE. In full round t group p has its primary
    on FE p and its j-th secondary on FE p + d_j (mod n), with offsets d_j = 1 + (t + j - 1)
    mod (n - 1): distinct and non-zero, so each layer of a round is a rotation of the FEs and
    every FE gets exactly one primary and k replicas per round. The offsets turn from round to
    round so that the first secondaries of the groups homed on one FE (the ones promoted when
    it fails and all are equally fresh) are spread evenly over the other FEs, rather than piled
    on a neighbour: SPEC's N-1 sizing assumes a failed FE's users spread over the survivors.
    In the last, partial round the replicas are dealt out in turn (group p on FEs pk ..
    pk+k-1, mod n) and each group's primary is chosen among its replicas so that no two share
    an FE (always possible: each FE appears at most k times in that round).
    """
    fes = _unique_ids(front_ends, "front_ends")
    if len(fes) != len(front_ends):
        raise ValueError(f"front_ends={tuple(front_ends)!r}: expected each id once")
    _check_count("len(front_ends)", len(fes), 1)
    _check_count("groups", groups, 1)
    _check_count("replicas", replicas, 1)
    n = len(fes)
    k = min(replicas, n)
    full_rounds, rest = divmod(groups, n)

    out: list[GroupReplicas] = []
    for t in range(full_rounds):
        offsets = [1 + (t + j - 1) % (n - 1) for j in range(1, k)]
        for p in range(n):
            out.append(GroupReplicas(fes[p], tuple(fes[(p + d) % n] for d in offsets)))
    if rest:
        members = [[(p * k + j) % n for j in range(k)] for p in range(rest)]
        primaries = _distinct_primaries(members)
        for ring, primary in zip(members, primaries, strict=True):
            out.append(GroupReplicas(fes[primary], tuple(fes[i] for i in ring if i != primary)))
    return Placement(fes, tuple(out))


def fail_over(
    placement: Placement,
    dead: Collection[str],
    *,
    freshness: Mapping[tuple[int, str], int] | None = None,
    catching_up: Collection[tuple[int, str]] = (),
) -> tuple[Placement, list[Promotion]]:
    """Drop the replicas on ``dead`` FEs and promote a secondary where a primary died.

    The promoted secondary is the live one with the highest ``freshness[(group, fe)]`` (its
    contiguous high-water mark: every write up to it, without a gap; a missing entry counts
    as 0), ties going to the one listed first; never one still ``catching_up`` (``(group,
    fe)``: a copy or catch-up not yet acknowledged, so it may lack acknowledged writes). A
    group whose live secondaries are all still catching up gets no promotion: the freshest of
    them is kept first, as the survivor of a group the caller holds in quorum loss. A group
    with no live replica left keeps an empty primary (quorum loss). Returns the new placement
    and the promotions in group order. ValueError for unknown FEs.
    """
    gone = set(placement.check_known(dead, "dead"))
    fresh: Mapping[tuple[int, str], int] = freshness or {}
    syncing = set(catching_up)
    out: list[GroupReplicas] = []
    promotions: list[Promotion] = []
    for group, replicas in enumerate(placement.groups):
        alive = [fe for fe in replicas.secondaries if fe not in gone]
        if replicas.primary and replicas.primary not in gone:
            out.append(GroupReplicas(replicas.primary, tuple(alive)))
        elif alive:

            def rank(i: int, group: int = group, alive: list[str] = alive) -> tuple[bool, int, int]:
                fe = alive[i]
                return (group, fe) not in syncing, fresh.get((group, fe), 0), -i

            new = alive.pop(max(range(len(alive)), key=rank))
            if (group, new) not in syncing:
                promotions.append(Promotion(group, replicas.primary, new))
            out.append(GroupReplicas(new, tuple(alive)))
        else:
            out.append(GroupReplicas(""))
    return Placement(placement.front_ends, tuple(out)), promotions


def _check_all_live(placement: Placement, up: Collection[str]) -> None:
    for group, replicas in enumerate(placement.groups):
        for fe in replicas.members:
            if fe not in up:
                raise ValueError(
                    f"routing group {group} has a replica on {fe!r}, which is not live: "
                    "expected fail_over to have dropped the replicas of dead front ends"
                )


def rebuild(
    placement: Placement, live: Sequence[str], replicas: int = REPLICAS
) -> tuple[Placement, list[tuple[int, str]]]:
    """Bring every group back to ``min(replicas, len(live))`` replicas.

    Each missing replica goes to a spare FE (live and holding no replica of that group), the
    least loaded one: fewest replicas, then fewest primaries, then first in ``live``; loads
    count the copies already chosen. New secondaries go last in promotion order (they are the
    least up to date). A group with no live replica is left alone: it needs quorum-loss
    recovery. Returns the new placement and the copies to make, as (group, FE), in order.

    ValueError if ``live`` names an FE outside the pool or a replica sits on an FE not in
    ``live`` (run ``fail_over`` first).
    """
    up = placement.check_known(live, "live")
    _check_count("replicas", replicas, 1)
    _check_all_live(placement, up)
    target = min(replicas, len(up))
    rank = {fe: i for i, fe in enumerate(up)}
    all_totals, all_prims = placement.replica_counts(), placement.primary_counts()
    totals = {fe: all_totals[fe] for fe in up}
    prims = {fe: all_prims[fe] for fe in up}

    out: list[GroupReplicas] = []
    copies: list[tuple[int, str]] = []
    for group, current in enumerate(placement.groups):
        secondaries = list(current.secondaries)
        while current.primary and 1 + len(secondaries) < target:
            held = {current.primary, *secondaries}
            fe = min((f for f in up if f not in held), key=lambda f: (totals[f], prims[f], rank[f]))
            secondaries.append(fe)
            totals[fe] += 1
            copies.append((group, fe))
        out.append(GroupReplicas(current.primary, tuple(secondaries)))
    return Placement(placement.front_ends, tuple(out)), copies


def rebalance_primaries(
    placement: Placement,
    live: Sequence[str],
    catching_up: Collection[tuple[int, str]] = (),
) -> tuple[Placement, list[Promotion]]:
    """Move primaries so they are spread as evenly as possible over the ``live`` FEs.

    For use when an FE has come back and ``rebuild``'s copies onto it have completed. Only a
    primary and a secondary of the same group swap roles (no data moves), never onto a
    secondary still ``catching_up`` (``(group, fe)``). Works by shifting
    primaries along the shortest chain from the most loaded FE to one with at least 2 fewer,
    until no such chain exists: then the spread is the best the replicas allow (max - min <= 1
    whenever that is reachable). Returns the new placement and the moves, in the order made.
    ValueError as for ``rebuild``.
    """
    up = placement.check_known(live, "live")
    _check_all_live(placement, up)
    syncing = set(catching_up)
    rank = {fe: i for i, fe in enumerate(up)}
    all_counts = placement.primary_counts()
    counts = {fe: all_counts[fe] for fe in up}
    groups = [[r.primary, *r.secondaries] for r in placement.groups]
    moves: list[Promotion] = []

    def chain_from(source: str) -> list[tuple[int, str, str]] | None:
        """Shortest chain of (group, from, to) ending on an FE with <= counts[source] - 2."""
        parent: dict[str, tuple[int, str]] = {}
        queue = deque([source])
        seen = {source}
        while queue:
            fe = queue.popleft()
            for group, members in enumerate(groups):
                if members[0] != fe:
                    continue
                for other in members[1:]:
                    if other in seen or (group, other) in syncing:
                        continue
                    seen.add(other)
                    parent[other] = (group, fe)
                    if counts[other] <= counts[source] - 2:
                        chain: list[tuple[int, str, str]] = []
                        node = other
                        while node != source:
                            g, prev = parent[node]
                            chain.append((g, prev, node))
                            node = prev
                        return chain[::-1]
                    queue.append(other)
        return None

    while True:
        for source in sorted(up, key=lambda f: (-counts[f], rank[f])):
            chain = chain_from(source)
            if chain:
                break
        else:
            break
        for group, old, new in chain:
            members = groups[group]
            members[members.index(new)] = old
            members[0] = new
            moves.append(Promotion(group, old, new))
        counts[chain[0][1]] -= 1
        counts[chain[-1][2]] += 1

    out = tuple(GroupReplicas(m[0], tuple(m[1:])) for m in groups)
    return Placement(placement.front_ends, out), moves


def spread(
    placement: Placement, up: Sequence[str], skip: Collection[int] = ()
) -> tuple[Placement, list[tuple[int, str, str]]]:
    """Move secondaries from the fullest ``up`` FEs to the emptiest (an FE that joined or
    came back) until replica counts differ by at most 1 or no move is possible; groups in
    ``skip`` (lost ones) stay as they are. Returns the new placement and the moves
    ``(group, from, to)``, in order; the moved replica goes last in promotion order (the
    least up to date). Each move lowers the sum of squared loads, so this ends; at the
    fixpoint it moves nothing."""
    rank = {fe: i for i, fe in enumerate(up)}
    members = [list(r.members) for r in placement.groups]
    load = dict.fromkeys(up, 0)
    for group, held in enumerate(members):
        if group not in skip:
            for fe in held:
                load[fe] += 1

    def next_move() -> tuple[int, str, str] | None:
        for hi in sorted(up, key=lambda f: (-load[f], rank[f])):
            for lo in sorted(up, key=lambda f: (load[f], rank[f])):
                if load[hi] - load[lo] < 2:
                    break
                for group, held in enumerate(members):
                    if group not in skip and hi in held[1:] and lo not in held:
                        return group, hi, lo
        return None

    moves: list[tuple[int, str, str]] = []
    while (move := next_move()) is not None:
        group, hi, lo = move
        held = members[group]
        held.remove(hi)
        held.append(lo)
        load[hi] -= 1
        load[lo] += 1
        moves.append(move)
    if not moves:
        return placement, moves
    groups = tuple(GroupReplicas(h[0], tuple(h[1:])) if h else GroupReplicas("") for h in members)
    return Placement(placement.front_ends, groups), moves
