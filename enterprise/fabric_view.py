"""What the pool manager shows: whether something is served and why not, its counters, and
``GetPoolStatus``'s view of the pool. Pure functions over what ``enterprise.fabric.Fabric``
holds; they change nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from enterprise.changes import CatchUpTask, Change, CopyTask, GroupRecovered, ReloadTask
from enterprise.front_ends import Member
from enterprise.placement import (
    MIN_REPLICAS_FOR_SERVICE,
    GroupState,
    Placement,
    Promotion,
    group_state,
)
from enterprise.quorum import QuorumVerdict
from pool.errors import Unavailable
from pool.status import FrontEndInfo, PoolStatusInfo, RoutingGroupInfo
from pool.status import GroupState as StatusGroupState
from pool.status import QuorumState as StatusQuorumState

RECOVERY_HINT: Final = (
    "start the front ends that held its replicas, or run "
    "ResetPoolRegistrarState(QUORUM_LOSS_RECOVERY)"
)
_GROUP_STATES: Final = {s.name: StatusGroupState[s.name] for s in StatusGroupState}
_QUORUM_STATES: Final = {s.name: StatusQuorumState[s.name] for s in StatusQuorumState}


@dataclass(frozen=True, slots=True)
class ServiceVerdict:
    """Whether something is served now; ``detail`` is the UNAVAILABLE message when not."""

    ok: bool
    detail: str = ""

    def require(self) -> None:
        """Raise ``pool.errors.Unavailable(detail)`` unless ``ok``."""
        if not self.ok:
            raise Unavailable(self.detail)


@dataclass(frozen=True, slots=True)
class FabricCounters:
    """Totals since the fabric was created, for metrics: secondaries promoted after their
    primary's FE left, replica copies ordered, groups reloaded from the back-end store and
    primaries moved by rebalancing; replicas caught up with only what they missed (returning
    ones, and secondaries brought level by a new primary) and groups recovered by their
    replicas coming back."""

    promotions: int = 0
    rebuilds: int = 0
    reloads: int = 0
    primary_moves: int = 0
    catch_ups: int = 0
    recoveries: int = 0

    def plus(self, changes: Iterable[Change | Promotion], *, moves: bool = False) -> FabricCounters:
        """These counters with ``changes`` counted: a ``Promotion`` is a promotion (a primary
        move when ``moves``), a ``CopyTask`` a rebuild, a ``ReloadTask`` a reload, a
        ``CatchUpTask`` a catch-up and a ``GroupRecovered`` a recovery."""
        kinds = [type(c) for c in changes]
        promoted = kinds.count(Promotion)
        return replace(
            self,
            promotions=self.promotions + (0 if moves else promoted),
            primary_moves=self.primary_moves + (promoted if moves else 0),
            rebuilds=self.rebuilds + kinds.count(CopyTask),
            reloads=self.reloads + kinds.count(ReloadTask),
            catch_ups=self.catch_ups + kinds.count(CatchUpTask),
            recoveries=self.recoveries + kinds.count(GroupRecovered),
        )


def group_reason(
    group: int,
    pool_reason: str,
    placement: Placement | None,
    lost: set[int],
    group_total: int,
    wrong_order: str,
) -> str:
    """Why ``group``'s users are not served ("" when they are)."""
    if pool_reason or placement is None:
        return pool_reason
    alive = placement[group].replica_count
    if alive >= MIN_REPLICAS_FOR_SERVICE and group not in lost:
        return ""
    running = f"{alive} of {group_total} replicas running"
    if group in lost:
        if wrong_order:
            return f"routing group {group} has lost quorum: {wrong_order}"
        return f"routing group {group} has lost quorum: {running}; {RECOVERY_HINT}"
    return (
        f"routing group {group} is not served yet: {running}, "
        f"{MIN_REPLICAS_FOR_SERVICE} needed; start another front end"
    )


def status_group_state(
    group: int, placement: Placement | None, lost: set[int], group_total: int, syncing: int = 0
) -> StatusGroupState:
    """``group``'s state; with ``syncing`` of its replicas still catching up it is not
    healthy (degraded while it is served)."""
    if placement is None or group in lost:
        return StatusGroupState.QUORUM_LOSS
    state = group_state(placement[group].replica_count, group_total)
    if syncing and state is GroupState.HEALTHY:
        return StatusGroupState.DEGRADED
    return _GROUP_STATES[state.name]


@dataclass(frozen=True, slots=True)
class FabricSnapshot:
    """What ``pool_status`` reads of the fabric."""

    pool_name: str
    pool_size: int
    groups: int
    group_total: int
    members: Mapping[str, Member]  # every known FE, first-started first
    start_order: Sequence[str]
    placement: Placement | None
    lost: set[int]
    verdict: QuorumVerdict
    started: bool
    started_at: float
    table_version: int
    counters: FabricCounters
    #: (group, fe) of every replica still catching up
    catching_up: frozenset[tuple[int, str]] = frozenset()


def pool_status(
    fabric: FabricSnapshot,
    users_per_group: Mapping[int, int],
    endpoints_per_fe: Mapping[str, int],
    now: float,
    *,
    users_signed_in: int = 0,
    wall_now: float | None = None,
) -> PoolStatusInfo:
    """What GetPoolStatus shows (see ``Fabric.status``)."""
    p = fabric.placement
    primaries = p.primary_counts() if p else {}
    replicas = p.replica_counts() if p else {}
    order = list(fabric.start_order)
    front_ends = tuple(
        FrontEndInfo(
            fe,
            member.address,
            member.metrics_address,
            member.state,
            primaries=primaries.get(fe, 0),
            secondaries=replicas.get(fe, 0) - primaries.get(fe, 0),
            endpoints=endpoints_per_fe.get(fe, 0),
            start_order=order.index(fe) + 1 if fe in order else 0,
        )
        for fe, member in fabric.members.items()
    )
    syncing = Counter(g for g, _ in fabric.catching_up)
    groups = tuple(
        RoutingGroupInfo(
            g,
            p[g].primary if p else "",
            p[g].secondaries if p else (),
            status_group_state(g, p, fabric.lost, fabric.group_total, syncing[g]),
            users_per_group.get(g, 0),
        )
        for g in range(fabric.groups)
    )
    verdict = fabric.verdict
    detail = verdict.detail
    if fabric.lost:
        listed = ", ".join(str(g) for g in sorted(fabric.lost))
        detail += f"; routing groups in quorum loss: {listed} ({RECOVERY_HINT})"
    started_at = 0.0
    if fabric.started:
        started_at = fabric.started_at
        if wall_now is not None:
            started_at = wall_now - (now - fabric.started_at)
    c = fabric.counters
    return PoolStatusInfo(
        "enterprise",
        fabric.pool_name,
        front_ends,
        groups,
        _QUORUM_STATES[verdict.state.name],
        detail,
        sum(users_per_group.values()),
        sum(endpoints_per_fe.values()),
        users_signed_in,
        started_at,
        extra={
            "pool_size": str(fabric.pool_size),
            "routing_table_version": str(fabric.table_version),
            "promotions": str(c.promotions),
            "rebuilds": str(c.rebuilds),
            "reloads": str(c.reloads),
            "primary_moves": str(c.primary_moves),
            "catch_ups": str(c.catch_ups),
            "recoveries": str(c.recoveries),
            "replicas_catching_up": str(len(fabric.catching_up)),
        },
    )
