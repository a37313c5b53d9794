"""The pool manager's state and the upkeep every one of its calls ends with.

``FabricCore`` holds what ``enterprise.fabric.Fabric`` knows (its FEs, the placement, the
bookkeeping of every replica: freshness, lineage, lost groups; quorum, counters, the routing
table) and the internal steps that keep it consistent: the one method that moves an FE
(``_transition``), settling after every change (first start, quorum, fail-over, rebuild,
spreading), taking back returning replicas, rebalancing, resets, and publishing a new routing
table. ``Fabric`` adds the public calls and the read side; see its module docstring for the
rules. Pure: no framework, no I/O, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from enterprise.changes import (
    CatchUpTask,
    Change,
    CopyTask,
    FrontEndChanged,
    FrontEndRemoved,
    GroupQuorumLost,
    GroupRecovered,
    QuorumChanged,
    ReloadTask,
    ReplicaDropped,
    TableSwapped,
)
from enterprise.fabric_config import FabricConfig
from enterprise.fabric_view import FabricCounters, group_reason
from enterprise.front_ends import RUNNING, UP, Member, TwoFrontEndRule, check_transition
from enterprise.lineage import Lineage
from enterprise.placement import (
    MIN_REPLICAS_FOR_SERVICE,
    GroupReplicas,
    Placement,
    Promotion,
    fail_over,
    place,
    rebalance_primaries,
    rebuild,
    spread,
)
from enterprise.quorum import MIN_POOL_SIZE, QuorumVerdict, evaluate
from enterprise.quorum import TRANSITIONS as QUORUM_TRANSITIONS
from enterprise.recovery import full_reset, recover_lost
from enterprise.returning import Freshness, catch_up, readmit
from enterprise.routing_table import RoutingTable
from pool.errors import FailedPrecondition, InvalidArgument, NotFound
from pool.status import FrontEndState, ResetType


class FabricCore:
    """The fabric's state and its internal steps (see the module docstring). Single writer."""

    def __init__(self, config: FabricConfig) -> None:
        self._config = config
        self._pool_size = config.pool_size
        self._groups = config.routing_groups
        self._members: dict[str, Member] = {}
        self._start_order: list[str] = []
        self._started = False
        self._started_at = 0.0
        self._last_now = 0.0
        self._placement: Placement | None = None
        self._lost: set[int] = set()
        self._freshness: Freshness = {}
        #: replicas a copy or catch-up was ordered for and not yet acknowledged
        #: (``caught_up``): ``{(group, fe): the sequence it catches up from, -1: a copy}``
        self._syncing: dict[tuple[int, str], int] = {}
        self._verdict = evaluate(self._pool_size, (), (), ever_started=False)
        self._counters = FabricCounters()
        self._lineage = Lineage()
        self._two_fe = TwoFrontEndRule()
        self._table = self._build_table(version=0)

    def _check_sequences(self, fe_id: str, sequences: Mapping[int, int]) -> None:
        for group, seq in sequences.items():
            self._check_group(group)
            if type(seq) is not int or seq < 0:
                raise InvalidArgument(
                    f"sequence {seq!r} for routing group {group} from {fe_id}: expected an "
                    "integer >= 0"
                )

    # --- internals: the one state writer ---

    def _transition(self, fe_id: str, new: FrontEndState, reason: str) -> FrontEndChanged:
        """Move FE ``fe_id`` (created if new) to ``new``: the only place an FE's state changes.
        IllegalTransition unless ``TRANSITIONS`` allows it."""
        member = self._members.get(fe_id)
        old = member.state if member is not None else None
        check_transition(fe_id, old, new, reason)
        if member is None:
            self._members[fe_id] = Member(new)
        else:
            member.state = new
        if self._pool_size == 2 and self._started:
            running = [fe for fe, m in self._members.items() if m.state in RUNNING]
            self._two_fe.moved(fe_id, new, running)
        return FrontEndChanged(fe_id, old, new, reason)

    # --- internals: settling after every change ---

    def _settle(self, now: float | None) -> list[Change]:
        """Bring the pool in line with its FEs' states: first start, quorum, fail-over, and
        with quorum rebuild and spreading. Every public call ends with ``_publish``."""
        up = self._up()
        if not self._started:
            verdict = evaluate(self._pool_size, self._start_order, up, ever_started=False)
            if verdict.has_quorum:
                self._started = True
                self._started_at = self._last_now if now is None else now
                placed = place(up, self._groups, self._config.replicas)
                self._placement = Placement(tuple(self._start_order), placed.groups)
        if self._started:
            running = [fe for fe in self._start_order if self._members[fe].state in RUNNING]
            verdict = evaluate(self._pool_size, self._start_order, running, ever_started=True)
        changes = self._record_quorum(verdict)
        if self._started:
            changes += self._fail_over()
            if verdict.has_quorum:
                changes += self._rebuild()
                changes += self._spread()
        return changes

    def _readmit(self, fe_id: str, held: Mapping[int, int]) -> list[Change]:
        """Take back the replicas ``fe_id`` brought back where their group misses one; drop
        the others (``enterprise.returning``)."""
        self._check_sequences(fe_id, held)
        if self._placement is None:
            return []
        self._placement, changes = readmit(
            self._placement,
            fe_id,
            held,
            lineage=self._lineage,
            freshness=self._freshness,
            lost=self._lost,
            group_total=self._group_total(),
            wait_for_recovery=bool(self._two_fe.wrong_order),
        )
        self._count(changes)
        return changes

    def _record_quorum(self, verdict: QuorumVerdict) -> list[Change]:
        old = self._verdict.state
        self._verdict = verdict
        if verdict.state is old:
            return []
        if verdict.state not in QUORUM_TRANSITIONS[old]:  # pragma: no cover - evaluate's promise
            raise AssertionError(f"pool quorum cannot go from {old} to {verdict.state}")
        return [QuorumChanged(old, verdict.state, verdict.detail)]

    def _fail_over(self) -> list[Change]:
        """Drop the replicas of FEs that are not UP; promote the freshest live secondary where
        a primary went; mark groups that fell below 2 live replicas as lost."""
        before = self._placement
        assert before is not None
        gone = [
            fe
            for fe in before.front_ends
            if self._members[fe].state is not UP and before.replicas_on(fe)
        ]
        if not gone:
            return []
        for fe in gone:
            for group in before.replicas_on(fe):
                self._lineage.left(group, fe)
        after, promotions = fail_over(
            before, gone, freshness=self._freshness, catching_up=self._syncing
        )
        self._placement = after
        changes: list[Change] = list(promotions)
        for promotion in promotions:
            g, new_primary = promotion.group, promotion.new
            self._lineage.begin(g, self._freshness.get((g, new_primary), 0))
            # the new primary brings its secondaries to its own state (a write in flight
            # when the old one died, or a catch-up or copy it never finished)
            changes += [
                CopyTask(g, new_primary, fe)
                if self._syncing.get((g, fe)) == -1
                else catch_up(g, new_primary, fe, lineage=self._lineage, freshness=self._freshness)
                for fe in after[g].secondaries
            ]
        self._count(changes)
        for fe in gone:
            self._forget_freshness(fe)
        for group, (old, new) in enumerate(zip(before.groups, after.groups, strict=True)):
            alive = new.replica_count
            fell = alive < old.replica_count and alive < MIN_REPLICAS_FOR_SERVICE
            stranded = old.primary in gone and (group, new.primary) in self._syncing
            if (fell or stranded) and group not in self._lost:
                self._lost.add(group)
                changes.append(GroupQuorumLost(group, alive))
        return changes

    def _rebuild(self) -> list[Change]:
        """Copy missing replicas onto spare UP FEs (lost groups are left for recovery)."""
        current = self._placement
        assert current is not None
        rebuilt, copies = rebuild(self._without_lost(current), self._up(), self._config.replicas)
        self._placement = self._with_lost(rebuilt, current)
        tasks: list[Change] = [CopyTask(group, rebuilt[group].primary, fe) for group, fe in copies]
        self._count(tasks)
        return tasks

    def _spread(self) -> list[Change]:
        """Spread secondaries evenly over the UP FEs (``enterprise.placement.spread``): each
        move copies a replica to the emptier FE and drops it from the fuller one."""
        current = self._placement
        assert current is not None
        spread_out, moves = spread(current, self._up(), self._lost)
        changes: list[Change] = []
        for group, hi, lo in moves:
            self._freshness.pop((group, hi), None)
            changes += [CopyTask(group, spread_out[group].primary, lo), ReplicaDropped(group, hi)]
        self._placement = spread_out
        self._count(changes)
        return changes

    def _rebalance(self) -> list[Change]:
        """Move primaries evenly over the UP FEs (lost groups stay as they are)."""
        if self._placement is None:
            return []
        up = self._up()
        current = self._placement
        balanced, moves = rebalance_primaries(self._without_lost(current), up, self._syncing)
        self._placement = self._with_lost(balanced, current)
        self._count(moves, moves=True)
        for move in moves:
            self._lineage.begin(move.group, self._freshness.get((move.group, move.new), 0))
        return list(moves)

    def _publish(self, *, force: bool = False) -> list[Change]:
        """Swap in a new routing table if routes changed (always when ``force``)."""
        table = self._build_table(self._table.version + 1)
        if not force and table.same_routes(self._table):
            return []
        self._table = table
        return [TableSwapped(table.version)]

    def _build_table(self, version: int) -> RoutingTable:
        reasons = tuple(self._group_reason(g) for g in range(self._groups))
        p = self._placement
        served = [p is not None and not reasons[g] for g in range(self._groups)]
        homes = tuple(
            p[g].primary if p is not None and served[g] else "" for g in range(self._groups)
        )
        secondaries = tuple(
            p[g].secondaries if p is not None and served[g] else () for g in range(self._groups)
        )
        addresses = {
            fe: self._members[fe].address
            for fe in self._ordered_ids()
            if self._members[fe].state is UP
        }
        return RoutingTable(version, homes, secondaries, reasons, MappingProxyType(addresses))

    # --- internals: resets ---

    def _require_up(self, what: str) -> list[str]:
        up = self._up()
        if not up:
            raise FailedPrecondition(
                f"no front end of pool {self._config.pool_name} is up: start one before {what}"
            )
        return up

    def _recover_lost(self, *, from_replicas: bool) -> list[Change]:
        up = self._require_up(ResetType.QUORUM_LOSS_RECOVERY.value)
        assert self._placement is not None
        self._placement, changes = recover_lost(
            self._placement,
            up,
            from_replicas=from_replicas,
            lineage=self._lineage,
            freshness=self._freshness,
            lost=self._lost,
        )
        self._count(changes)
        return changes + self._settle(None)

    def _full_reset(self) -> list[Change]:
        up = self._require_up(ResetType.FULL_RESET.value)
        self._placement, changes = full_reset(
            up,
            self._start_order,
            self._groups,
            self._config.replicas,
            lineage=self._lineage,
            freshness=self._freshness,
            lost=self._lost,
        )
        self._syncing.clear()
        self._count(changes)
        return changes + self._settle(None)

    def _remove(self, fe_id: str) -> list[Change]:
        member = self._member(fe_id)
        if member.state in RUNNING:
            raise FailedPrecondition(
                f"front end {fe_id} is {member.state.value}: stop it before removing it for good "
                f"({ResetType.MACHINE_STATE_REMOVED.value})"
            )
        if self._pool_size <= MIN_POOL_SIZE:
            raise FailedPrecondition(
                f"pool {self._config.pool_name} has {self._pool_size} front ends, the minimum: "
                f"cannot remove {fe_id}"
            )
        del self._members[fe_id]
        if fe_id in self._start_order:
            self._start_order.remove(fe_id)
        if self._placement is not None:  # a front end that is not running holds nothing
            self._placement = Placement(tuple(self._start_order), self._placement.groups)
        self._forget_freshness(fe_id)
        self._lineage.forget_front_end(fe_id)
        self._pool_size -= 1
        changes: list[Change] = [FrontEndRemoved(fe_id, self._pool_size)]
        return changes + self._settle(None)

    # --- internals: small helpers ---

    def _up(self) -> list[str]:
        """UP FEs in start order."""
        return [fe for fe in self._start_order if self._members[fe].state is UP]

    def _ordered_ids(self) -> list[str]:
        """Known FEs: the start order, then those that never came up, in order first seen."""
        rest = [fe for fe in self._members if fe not in self._start_order]
        return [*self._start_order, *rest]

    def _group_total(self) -> int:
        return min(self._config.replicas, self._pool_size)

    def _pool_reason(self) -> str:
        return "" if self._started and self._verdict.has_quorum else self._verdict.detail

    def _group_reason(self, group: int) -> str:
        return group_reason(
            group,
            self._pool_reason(),
            self._placement,
            self._lost,
            self._group_total(),
            self._two_fe.wrong_order,
        )

    def _without_lost(self, placement: Placement) -> Placement:
        """``placement`` with lost groups blanked, so placement functions leave them alone."""
        groups = tuple(
            GroupReplicas("") if g in self._lost else r for g, r in enumerate(placement.groups)
        )
        return Placement(placement.front_ends, groups)

    def _with_lost(self, placement: Placement, original: Placement) -> Placement:
        """``placement`` with the lost groups put back as they are in ``original``."""
        groups = tuple(
            original.groups[g] if g in self._lost else r for g, r in enumerate(placement.groups)
        )
        return Placement(placement.front_ends, groups)

    def _forget_freshness(self, fe_id: str) -> None:
        for key in [k for k in self._freshness if k[1] == fe_id]:
            del self._freshness[key]
        for key in [k for k in self._syncing if k[1] == fe_id]:
            del self._syncing[key]

    def _count(self, changes: list[Change] | list[Promotion], *, moves: bool = False) -> None:
        """Count ``changes`` and keep track of the replicas they leave catching up: a copy or
        catch-up ordered makes its target one, until ``caught_up``; a replica dropped,
        reloaded or made primary is none."""
        self._counters = self._counters.plus(changes, moves=moves)
        for change in changes:
            match change:
                case CatchUpTask(group=g, to_fe=fe, since=since):
                    self._syncing[(g, fe)] = since
                case CopyTask(group=g, to_fe=fe):
                    self._syncing[(g, fe)] = -1
                case ReplicaDropped(group=g, fe=fe) | GroupRecovered(group=g, primary=fe):
                    self._syncing.pop((g, fe), None)
                case Promotion(group=g, new=fe):
                    self._syncing.pop((g, fe), None)
                case ReloadTask(group=g):
                    for key in [k for k in self._syncing if k[0] == g]:
                        del self._syncing[key]

    def _check_room(self, fe_id: str) -> None:
        if len(self._members) >= self._pool_size:
            raise FailedPrecondition(
                f"pool {self._config.pool_name} already has its {self._pool_size} front ends "
                f"({', '.join(self._ordered_ids())}): {fe_id} is not one of them"
            )

    @staticmethod
    def _check_id(fe_id: str) -> None:
        if not isinstance(fe_id, str) or not fe_id:
            raise InvalidArgument(f"front end id {fe_id!r} is empty: expected a name like fe-1")

    def _check_group(self, group: int) -> None:
        if type(group) is not int or not (0 <= group < self._groups):
            raise NotFound(
                f"unknown routing group {group!r}: pool {self._config.pool_name} has groups "
                f"0..{self._groups - 1}"
            )

    def _member(self, fe_id: str) -> Member:
        member = self._members.get(fe_id)
        if member is None:
            known = ", ".join(self._ordered_ids()) or "none yet"
            raise NotFound(
                f"unknown front end {fe_id!r} in pool {self._config.pool_name} (known: {known}):"
                " it must register first"
            )
        return member

    def _tick(self, now: float) -> None:
        self._last_now = max(self._last_now, now)
