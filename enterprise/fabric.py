"""The pool manager's brain: the Windows Fabric role of an Enterprise pool (SPEC section 2).

``Fabric`` decides, for a pool of 2 to 12 front ends (FEs), which FEs are up, whether the pool
has quorum, where every routing group's replicas live and which FE is each group's home. It is
a pure, single-writer state machine: no framework, no I/O, no clock of its own. Time comes in
as ``now`` arguments, seconds on one monotonic clock of the caller (``Clock.monotonic()``). A
Ray actor wraps it thinly: it feeds in registrations, heartbeats, Ray's actor-death signals and
operator commands, calls ``check(now)`` every heartbeat interval, and carries out the
``Change`` values every call returns (copy a group, reload it from the back-end store, tell the
FEs that a new ``RoutingTable`` exists).

Front end states (``pool.status.FrontEndState``); ``_transition`` is the one method that moves
an FE, and it raises ``IllegalTransition`` for anything not listed here (``TRANSITIONS``)::

    (new)     --start()------------------------------------> STARTING
    (new)     --register()---------------------------------> UP        joins the start order
    STARTING  --register()---------------------------------> UP        joins it if the first time
    STARTING  --stop(graceful=False) / mark_dead()---------> DOWN
    UP        --stop(graceful=True)------------------------> DRAINING  hands its replicas over
    UP        --stop(graceful=False) / mark_dead()
                / check(): no heartbeat for misses*interval-> DOWN
    UP        --register() (it restarted unnoticed)--------> DOWN, then UP
    DRAINING  --check(): drain_timeout over / stop(False)
                / mark_dead() / heartbeats missed----------> DOWN
    DRAINING  --register() (it restarted)------------------> DOWN, then UP
    DOWN      --start()------------------------------------> STARTING
    DOWN      --register()---------------------------------> UP

Rules this module chooses (SPEC leaves them open):

* **Only UP FEs serve replicas.** An FE that leaves UP (crash, stop, drain) loses its place in
  the placement at once, but keeps its replicas in its own local store: when it registers
  again it says which it holds and how fresh each is (``register(held=...)``). A replica that
  returns to a group missing one is taken back and caught up from the primary with only what
  it missed (``CatchUpTask``; a whole ``CopyTask`` when ``enterprise.lineage`` cannot vouch
  for its history); one nobody needs is dropped (``ReplicaDropped``). A DRAINING FE still
  counts as running for pool quorum (its process lives while its users move) but its
  primaries have already moved.
* **A routing group that falls below 2 live replicas is lost** (``GroupQuorumLost``), whatever
  the cause, until 2 of its replicas are live again (the returning ones included): the
  freshest (latest epoch, then highest sequence) becomes primary and the others catch up from
  it (``GroupRecovered``). ``reset(QUORUM_LOSS_RECOVERY)`` or ``reset(FULL_RESET)`` reloads it
  from the back-end store instead. A group that merely never had 2 replicas (a two-FE pool
  first started with one FE) is not lost: it gets its second copy when a spare FE comes.
* **While the pool lacks quorum** replicas of FEs that go down are still dropped and
  secondaries promoted (that is where the data is), but nothing is copied and no group is
  served: the routing table has no home for any group.
* **Placement happens at the first start**, over the FEs up at that moment; FEs that join
  later are given secondaries by spreading replicas evenly (``CopyTask`` plus
  ``ReplicaDropped``). Primaries move only by promotion, or by ``rebalance()`` /
  ``reset(SERVICE_RESET)``, which the caller runs once copies are complete.
* **MACHINE_STATE_REMOVED shrinks the pool**: the FE (which must not be running) leaves the
  start order for good, ``pool_size`` drops by one (never below 2) and both quorum tables then
  apply to the smaller pool. The number of routing groups does not change (users stay put).
* **Every reset publishes a new routing table**, so every FE re-reads it; other calls publish
  one only when something in it changed.
* **Lync's two-FE rule**: a two-FE pool whose FEs both went down comes back by itself only
  if they return in reverse order (the one that went down last first); its groups are then
  served again once both are back, the freshest replica primary. In the other order, its
  groups wait for quorum-loss recovery, and their message says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

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
from enterprise.fabric_config import FabricConfig as FabricConfig
from enterprise.lineage import Lineage
from enterprise.placement import (
    MIN_REPLICAS_FOR_SERVICE,
    GroupReplicas,
    Placement,
    fail_over,
    group_state,
    place,
    rebalance_primaries,
    rebuild,
)
from enterprise.quorum import (
    MIN_POOL_SIZE,
    QuorumVerdict,
    evaluate,
    two_fe_restart_ok,
)
from enterprise.quorum import TRANSITIONS as QUORUM_TRANSITIONS
from enterprise.routing_table import RoutingTable
from pool.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from pool.status import (
    FrontEndInfo,
    FrontEndState,
    PoolStatusInfo,
    RoutingGroupInfo,
)
from pool.status import GroupState as StatusGroupState
from pool.status import QuorumState as StatusQuorumState
from pool.status import ResetType as ResetType

UP: Final = FrontEndState.UP
DOWN: Final = FrontEndState.DOWN
DRAINING: Final = FrontEndState.DRAINING
STARTING: Final = FrontEndState.STARTING

#: The allowed moves of an FE (``None``: an FE the pool has not seen yet). See the docstring.
TRANSITIONS: Final[Mapping[FrontEndState | None, frozenset[FrontEndState]]] = MappingProxyType(
    {
        None: frozenset({STARTING, UP}),
        STARTING: frozenset({UP, DOWN}),
        UP: frozenset({DRAINING, DOWN}),
        DRAINING: frozenset({DOWN}),
        DOWN: frozenset({STARTING, UP}),
    }
)

_RUNNING: Final = frozenset({UP, DRAINING})
_RECOVERY_HINT: Final = (
    "start the front ends that held its replicas, or run "
    "ResetPoolRegistrarState(QUORUM_LOSS_RECOVERY)"
)


class IllegalTransition(FailedPrecondition):
    """An FE was asked to move between states that ``TRANSITIONS`` does not connect."""


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
    primaries moved by rebalancing; returning replicas caught up and groups recovered by
    their replicas coming back."""

    promotions: int = 0
    rebuilds: int = 0
    reloads: int = 0
    primary_moves: int = 0
    catch_ups: int = 0
    recoveries: int = 0


@dataclass(slots=True)
class _Member:
    state: FrontEndState
    address: str = ""
    metrics_address: str = ""
    last_heartbeat: float = 0.0
    drain_deadline: float = 0.0


_GROUP_STATES: Final = {s.name: StatusGroupState[s.name] for s in StatusGroupState}
_QUORUM_STATES: Final = {s.name: StatusQuorumState[s.name] for s in StatusQuorumState}


# --- the state machine ---


class Fabric:
    """The pool manager. Single writer: one caller at a time (the wrapping actor).

    Every mutating call returns the ``Change``s it made, in order; read ``routing_table`` for
    the current snapshot. Unknown FEs raise ``NotFound``, impossible requests
    ``FailedPrecondition`` (``IllegalTransition`` for an FE state move), bad arguments
    ``InvalidArgument``: all from ``pool.errors``, with messages that say what to do.
    """

    def __init__(self, config: FabricConfig) -> None:
        self._config = config
        self._pool_size = config.pool_size
        self._groups = config.routing_groups
        self._members: dict[str, _Member] = {}
        self._start_order: list[str] = []
        self._started = False
        self._started_at = 0.0
        self._last_now = 0.0
        self._placement: Placement | None = None
        self._lost: set[int] = set()
        self._freshness: dict[tuple[int, str], int] = {}
        self._verdict = evaluate(self._pool_size, (), (), ever_started=False)
        self._promotions = 0
        self._rebuilds = 0
        self._reloads = 0
        self._primary_moves = 0
        self._catch_ups = 0
        self._recoveries = 0
        self._lineage = Lineage()
        self._last_down = ""  # two-FE pools: the FE that went down last when both did
        self._wrong_order = ""  # two-FE pools: why lost groups wait for quorum-loss recovery
        self._table = self._build_table(version=0)

    # --- read side ---

    @property
    def config(self) -> FabricConfig:
        return self._config

    @property
    def pool_size(self) -> int:
        """FEs in the pool: the configured size less any MACHINE_STATE_REMOVED."""
        return self._pool_size

    @property
    def routing_groups(self) -> int:
        return self._groups

    @property
    def routing_table(self) -> RoutingTable:
        return self._table

    @property
    def placement(self) -> Placement | None:
        """Where every group's replicas are; ``None`` before the first start."""
        return self._placement

    @property
    def quorum(self) -> QuorumVerdict:
        return self._verdict

    @property
    def started(self) -> bool:
        """Whether the pool has completed its first start."""
        return self._started

    @property
    def start_order(self) -> tuple[str, ...]:
        """FEs in the order they first came up (SPEC's "first" FEs)."""
        return tuple(self._start_order)

    @property
    def lost_groups(self) -> tuple[int, ...]:
        """Groups in routing-group quorum loss, waiting for quorum-loss recovery."""
        return tuple(sorted(self._lost))

    @property
    def counters(self) -> FabricCounters:
        return FabricCounters(
            self._promotions,
            self._rebuilds,
            self._reloads,
            self._primary_moves,
            self._catch_ups,
            self._recoveries,
        )

    @property
    def whole(self) -> bool:
        """Whether every FE of the pool is UP (the time to rebalance primaries)."""
        up = self._up()
        return self._started and len(up) == self._pool_size

    def state_of(self, fe_id: str) -> FrontEndState:
        return self._member(fe_id).state

    def front_ends(self) -> dict[str, FrontEndState]:
        """Every known FE and its state, first-started first."""
        return {fe: self._members[fe].state for fe in self._ordered_ids()}

    def pool_serving(self) -> ServiceVerdict:
        """Whether the pool works at all: first start done and the functional table met."""
        reason = self._pool_reason()
        return ServiceVerdict(not reason, reason)

    def group_serving(self, group: int) -> ServiceVerdict:
        """Whether ``group``'s users are served: pool serving, >= 2 live replicas (and so a
        live primary)."""
        self._check_group(group)
        reason = self._group_reason(group)
        return ServiceVerdict(not reason, reason)

    def serving(self, fe_id: str) -> ServiceVerdict:
        """Whether FE ``fe_id`` serves users now: it is UP and the pool is serving."""
        member = self._member(fe_id)
        reason = self._pool_reason()
        if not reason and member.state is not UP:
            reason = (
                f"front end {fe_id} is {member.state.value}: it serves no users; sign in again "
                "to be sent to your home server"
            )
        return ServiceVerdict(not reason, reason)

    # --- front ends come and go ---

    def register(
        self,
        fe_id: str,
        address: str,
        metrics_address: str,
        now: float,
        held: Mapping[int, int] | None = None,
    ) -> list[Change]:
        """FE ``fe_id`` came up at ``address``, holding in its local store the replicas
        ``held`` (``{group: sequence}``). The first time, it joins the start order; the pool
        starts once the first-start table is met, and places its groups then. An FE that
        registers while still UP or DRAINING restarted unnoticed: it goes DOWN and then UP
        again. Its replicas are taken back where a group misses one (see the module
        docstring), the others dropped."""
        self._check_id(fe_id)
        if not isinstance(address, str) or not address:
            raise InvalidArgument(
                f"address={address!r} for front end {fe_id} is empty: expected host:port"
            )
        self._tick(now)
        changes: list[Change] = []
        member = self._members.get(fe_id)
        if member is None:
            self._check_room(fe_id)
        elif member.state in _RUNNING:
            changes.append(
                self._transition(fe_id, DOWN, "registered again: it restarted, its copies are gone")
            )
            changes += self._settle(now)
        changes.append(self._transition(fe_id, UP, f"registered at {address}"))
        member = self._members[fe_id]
        member.address, member.metrics_address = address, metrics_address
        member.last_heartbeat = now
        if fe_id not in self._start_order:
            self._start_order.append(fe_id)
            if self._placement is not None:
                p = self._placement
                self._placement = Placement((*p.front_ends, fe_id), p.groups)
        changes += self._readmit(fe_id, held or {})
        return changes + self._settle(now) + self._publish()

    def heartbeat(self, fe_id: str, now: float) -> None:
        """FE ``fe_id`` is alive. FailedPrecondition unless it is UP or DRAINING: an FE
        declared down must register again (its replicas were given away)."""
        member = self._member(fe_id)
        if member.state not in _RUNNING:
            raise FailedPrecondition(
                f"front end {fe_id} is {member.state.value} in pool {self._config.pool_name}: "
                "register it again to rejoin"
            )
        self._tick(now)
        member.last_heartbeat = max(member.last_heartbeat, now)

    def check(self, now: float) -> list[Change]:
        """Declare DOWN every running FE silent for more than ``heartbeat_timeout`` and every
        DRAINING FE past its drain deadline; then fail over, rebuild and publish."""
        self._tick(now)
        changes: list[Change] = []
        timeout = self._config.heartbeat_timeout
        for fe in self._ordered_ids():
            member = self._members[fe]
            if member.state not in _RUNNING:
                continue
            silent = now - member.last_heartbeat
            if silent > timeout:
                cfg = self._config
                reason = (
                    f"no heartbeat for {silent:g} s (timeout {timeout:g} s: "
                    f"{cfg.heartbeat_misses} missed at {cfg.heartbeat_interval:g} s)"
                )
                changes.append(self._transition(fe, DOWN, reason))
            elif member.state is DRAINING and now >= member.drain_deadline:
                changes.append(self._transition(fe, DOWN, "drain finished"))
        return changes + self._settle(now) + self._publish()

    def mark_dead(self, fe_id: str, reason: str) -> list[Change]:
        """Ray says FE ``fe_id``'s actor died. Idempotent: nothing happens if it is DOWN."""
        member = self._member(fe_id)
        if member.state is DOWN:
            return []
        changes: list[Change] = [self._transition(fe_id, DOWN, f"actor died: {reason}")]
        return changes + self._settle(None) + self._publish()

    def stop(self, fe_id: str, *, graceful: bool, now: float) -> list[Change]:
        """Stop FE ``fe_id``. Graceful: DRAINING now (its primaries go to secondaries, its
        users re-register elsewhere), DOWN after ``drain_timeout`` or ``stop(graceful=False)``.
        Otherwise DOWN at once. IllegalTransition if it is already down."""
        member = self._member(fe_id)
        self._tick(now)
        if graceful:
            change = self._transition(fe_id, DRAINING, "stopping gracefully")
            member.drain_deadline = now + self._config.drain_timeout
        else:
            why = "drain finished" if member.state is DRAINING else "stopped by the operator"
            change = self._transition(fe_id, DOWN, why)
        return [change, *self._settle(now), *self._publish()]

    def start(self, fe_id: str) -> list[Change]:
        """The operator starts FE ``fe_id`` (new or DOWN): STARTING until it registers."""
        self._check_id(fe_id)
        if fe_id not in self._members:
            self._check_room(fe_id)
        return [self._transition(fe_id, STARTING, "started by the operator")]

    def report_freshness(self, fe_id: str, sequences: Mapping[int, int]) -> None:
        """FE ``fe_id`` holds group g's writes up to sequence ``sequences[g]``. On fail-over
        the live secondary with the highest sequence is promoted (unreported: 0)."""
        member = self._member(fe_id)
        if member.state is not UP:
            raise FailedPrecondition(
                f"front end {fe_id} is {member.state.value}: it holds no replicas, so its "
                "freshness does not count"
            )
        self._check_sequences(fe_id, sequences)
        for group, seq in sequences.items():
            self._freshness[(group, fe_id)] = seq

    def _check_sequences(self, fe_id: str, sequences: Mapping[int, int]) -> None:
        for group, seq in sequences.items():
            self._check_group(group)
            if type(seq) is not int or seq < 0:
                raise InvalidArgument(
                    f"sequence {seq!r} for routing group {group} from {fe_id}: expected an "
                    "integer >= 0"
                )

    # --- operator ---

    def rebalance(self) -> list[Change]:
        """Spread primaries evenly over the UP FEs by swapping primary and secondary roles
        (no data moves). Run it once the copies to a returning FE are complete."""
        return self._rebalance() + self._publish()

    def reset(self, reset_type: ResetType, *, fe_id: str | None = None) -> list[Change]:
        """``Reset-CsPoolRegistrarState``. Always publishes a new routing table.

        * SERVICE_RESET: re-run fail-over and rebuild and rebalance primaries; nothing is lost.
        * QUORUM_LOSS_RECOVERY: every group in routing-group quorum loss gets a primary on an
          UP FE (the survivor if it has one, else the FE with fewest primaries) and is reloaded
          from the back-end store (a ``ReloadTask`` each: those are the groups recovered), then
          copied to new secondaries.
        * FROM_REPLICAS (poolsim's own): as QUORUM_LOSS_RECOVERY, but a group with a surviving
          replica is served from it as it is (``GroupRecovered``, nothing lost); only groups
          with no live replica at all are reloaded.
        * FULL_RESET: every group is placed anew over the UP FEs and reloaded.
        * MACHINE_STATE_REMOVED (``fe_id`` required): remove a front end that is not running
          for good; the pool shrinks by one (see the module docstring).
        """
        if (reset_type is ResetType.MACHINE_STATE_REMOVED) != (fe_id is not None):
            raise InvalidArgument(
                f"reset {reset_type.value} with fe_id={fe_id!r}: expected a front end id for "
                "MachineStateRemoved and none for the other reset types"
            )
        if fe_id is not None:
            changes = self._remove(fe_id)
        else:
            if reset_type is not ResetType.SERVICE_RESET:
                self._wrong_order = ""
            if not self._started:
                raise FailedPrecondition(
                    f"pool {self._config.pool_name} has not started ({self._verdict.detail}): "
                    f"nothing to {reset_type.value}"
                )
            if reset_type is ResetType.SERVICE_RESET:
                changes = self._settle(None) + self._rebalance()
            elif reset_type is ResetType.QUORUM_LOSS_RECOVERY:
                changes = self._recover_lost(from_replicas=False)
            elif reset_type is ResetType.FROM_REPLICAS:
                changes = self._recover_lost(from_replicas=True)
            else:
                changes = self._full_reset()
        return changes + self._publish(force=True)

    # --- status ---

    def status(
        self,
        users_per_group: Mapping[int, int],
        endpoints_per_fe: Mapping[str, int],
        now: float,
        *,
        users_signed_in: int = 0,
        wall_now: float | None = None,
    ) -> PoolStatusInfo:
        """What GetPoolStatus shows. ``now`` is on the fabric's clock; pass ``wall_now``
        (``Clock.now()``) to report ``started_at`` as wall-clock seconds."""
        for group in users_per_group:
            self._check_group(group)
        for fe in endpoints_per_fe:
            self._member(fe)
        p = self._placement
        primaries = p.primary_counts() if p else {}
        replicas = p.replica_counts() if p else {}
        front_ends: list[FrontEndInfo] = []
        for fe in self._ordered_ids():
            member = self._members[fe]
            info = FrontEndInfo(
                fe,
                member.address,
                member.metrics_address,
                member.state,
                primaries=primaries.get(fe, 0),
                secondaries=replicas.get(fe, 0) - primaries.get(fe, 0),
                endpoints=endpoints_per_fe.get(fe, 0),
                start_order=self._start_rank(fe),
            )
            front_ends.append(info)
        groups = tuple(
            RoutingGroupInfo(
                g,
                p[g].primary if p else "",
                p[g].secondaries if p else (),
                self._status_group_state(g),
                users_per_group.get(g, 0),
            )
            for g in range(self._groups)
        )
        detail = self._verdict.detail
        if self._lost:
            listed = ", ".join(str(g) for g in sorted(self._lost))
            detail += f"; routing groups in quorum loss: {listed} ({_RECOVERY_HINT})"
        started_at = 0.0
        if self._started:
            started_at = self._started_at
            if wall_now is not None:
                started_at = wall_now - (now - self._started_at)
        return PoolStatusInfo(
            "enterprise",
            self._config.pool_name,
            tuple(front_ends),
            groups,
            _QUORUM_STATES[self._verdict.state.name],
            detail,
            sum(users_per_group.values()),
            sum(endpoints_per_fe.values()),
            users_signed_in,
            started_at,
            extra={
                "pool_size": str(self._pool_size),
                "routing_table_version": str(self._table.version),
                "promotions": str(self._promotions),
                "rebuilds": str(self._rebuilds),
                "reloads": str(self._reloads),
                "primary_moves": str(self._primary_moves),
                "catch_ups": str(self._catch_ups),
                "recoveries": str(self._recoveries),
            },
        )

    # --- internals: the one state writer ---

    def _transition(self, fe_id: str, new: FrontEndState, reason: str) -> FrontEndChanged:
        """Move FE ``fe_id`` (created if new) to ``new``: the only place an FE's state changes.
        IllegalTransition unless ``TRANSITIONS`` allows it."""
        member = self._members.get(fe_id)
        old = member.state if member is not None else None
        allowed = TRANSITIONS[old]
        if new not in allowed:
            was = old.value if old is not None else "new"
            if old is new:
                raise IllegalTransition(f"front end {fe_id} is already {was} (asked: {reason})")
            names = " or ".join(sorted(s.value for s in allowed))
            raise IllegalTransition(
                f"front end {fe_id} cannot go from {was} to {new.value} ({reason}): "
                f"a {was} front end can only become {names}"
            )
        if member is None:
            self._members[fe_id] = _Member(new)
        else:
            member.state = new
        if self._pool_size == 2 and self._started:
            self._two_front_end_rule(fe_id, new)
        return FrontEndChanged(fe_id, old, new, reason)

    def _two_front_end_rule(self, fe_id: str, new: FrontEndState) -> None:
        """Remember which FE of a two-FE pool went down last, and whether the first one back
        was that one (Lync's reverse-order rule; see the module docstring)."""
        running = [fe for fe, m in self._members.items() if m.state in _RUNNING]
        if new is DOWN and not running:
            self._last_down = fe_id
        elif new is UP and self._last_down and running == [fe_id]:
            if not two_fe_restart_ok(self._last_down, fe_id):
                self._wrong_order = (
                    f"both front ends of this two-front-end pool went down and {fe_id} came "
                    f"back first, but {self._last_down} went down last: Lync's pool comes back "
                    "only in reverse order; run ResetPoolRegistrarState(QUORUM_LOSS_RECOVERY)"
                )
            self._last_down = ""

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
            running = [fe for fe in self._start_order if self._members[fe].state in _RUNNING]
            verdict = evaluate(self._pool_size, self._start_order, running, ever_started=True)
        changes = self._record_quorum(verdict)
        if self._started:
            changes += self._fail_over()
            if verdict.has_quorum:
                changes += self._rebuild()
                changes += self._spread()
        return changes

    def _readmit(self, fe_id: str, held: Mapping[int, int]) -> list[Change]:
        """Take back the replicas ``fe_id`` brought back where their group misses one (see
        the module docstring); drop the others."""
        self._check_sequences(fe_id, held)
        p = self._placement
        if p is None:
            return []
        groups = list(p.groups)
        changes: list[Change] = []
        lineage = self._lineage
        for group, seq in sorted(held.items()):
            r = groups[group]
            if fe_id in r.members:
                continue
            if not lineage.knows(group, fe_id) or r.replica_count >= self._group_total():
                changes.append(ReplicaDropped(group, fe_id))
                lineage.rejoined(group, fe_id)
                continue
            self._freshness[(group, fe_id)] = seq
            if group in self._lost:
                groups[group] = self._joined(r, fe_id)
                enough = groups[group].replica_count >= MIN_REPLICAS_FOR_SERVICE
                if enough and not self._wrong_order:
                    groups[group], recovered = self._recover_from_replicas(group, groups[group])
                    changes += recovered
                continue
            if not r.primary:  # pragma: no cover - a group not lost has a primary
                changes.append(ReplicaDropped(group, fe_id))
                continue
            groups[group] = GroupReplicas(r.primary, (*r.secondaries, fe_id))
            changes.append(self._catch_up(group, r.primary, fe_id))
        self._placement = Placement(p.front_ends, tuple(groups))
        return changes

    @staticmethod
    def _joined(r: GroupReplicas, fe_id: str) -> GroupReplicas:
        if not r.primary:
            return GroupReplicas(fe_id)
        return GroupReplicas(r.primary, (*r.secondaries, fe_id))

    def _recover_from_replicas(
        self, group: int, r: GroupReplicas
    ) -> tuple[GroupReplicas, list[Change]]:
        """Lost ``group`` has 2 or more live replicas again: the freshest (latest epoch, then
        highest sequence, then the current primary) serves it, the others catch up."""
        lineage = self._lineage
        members = r.members

        def rank(i: int) -> tuple[int, int, int]:
            fe = members[i]
            return lineage.epoch_of(group, fe), self._freshness.get((group, fe), 0), -i

        best = members[max(range(len(members)), key=rank)]
        others = tuple(fe for fe in members if fe != best)
        changes: list[Change] = [GroupRecovered(group, best, len(members))]
        changes += [self._catch_up(group, best, fe) for fe in others]
        lineage.begin(group, self._freshness.get((group, best), 0))
        for fe in members:
            lineage.rejoined(group, fe)
        self._lost.discard(group)
        self._recoveries += 1
        return GroupReplicas(best, others), changes

    def _catch_up(self, group: int, primary: str, fe_id: str) -> Change:
        """How ``fe_id``'s replica of ``group`` is brought up to ``primary``'s: only what it
        missed when its history is a prefix of the primary's, else a whole copy."""
        lineage = self._lineage
        seq = self._freshness.get((group, fe_id), 0)
        prefix = lineage.is_prefix(
            group, lineage.epoch_of(group, fe_id), seq, lineage.epoch_of(group, primary)
        )
        lineage.rejoined(group, fe_id)
        if prefix and seq <= self._freshness.get((group, primary), seq):
            self._catch_ups += 1
            return CatchUpTask(group, primary, fe_id, seq)
        self._freshness.pop((group, fe_id), None)
        self._rebuilds += 1
        return CopyTask(group, primary, fe_id)

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
        after, promotions = fail_over(before, gone, freshness=self._freshness)
        self._placement = after
        self._promotions += len(promotions)
        for promotion in promotions:
            self._lineage.begin(
                promotion.group, self._freshness.get((promotion.group, promotion.new), 0)
            )
        for fe in gone:
            self._forget_freshness(fe)
        changes: list[Change] = list(promotions)
        for group, (old, new) in enumerate(zip(before.groups, after.groups, strict=True)):
            alive = new.replica_count
            fell = alive < old.replica_count and alive < MIN_REPLICAS_FOR_SERVICE
            if fell and group not in self._lost:
                self._lost.add(group)
                changes.append(GroupQuorumLost(group, alive))
        return changes

    def _rebuild(self) -> list[Change]:
        """Copy missing replicas onto spare UP FEs (lost groups are left for recovery)."""
        current = self._placement
        assert current is not None
        rebuilt, copies = rebuild(self._without_lost(current), self._up(), self._config.replicas)
        self._placement = self._with_lost(rebuilt, current)
        self._rebuilds += len(copies)
        return [CopyTask(group, rebuilt[group].primary, fe) for group, fe in copies]

    def _spread(self) -> list[Change]:
        """Move secondaries from the fullest UP FEs to the emptiest (an FE that joined or came
        back) until replica counts differ by at most 1 or no move is possible. Each move
        lowers the sum of squared loads, so this ends; at the fixpoint it moves nothing."""
        current = self._placement
        assert current is not None
        up = self._up()
        rank = {fe: i for i, fe in enumerate(up)}
        members = [list(r.members) for r in current.groups]
        load = dict.fromkeys(up, 0)
        for group, held in enumerate(members):
            if group not in self._lost:
                for fe in held:
                    load[fe] += 1

        def next_move() -> tuple[int, str, str] | None:
            for hi in sorted(up, key=lambda f: (-load[f], rank[f])):
                for lo in sorted(up, key=lambda f: (load[f], rank[f])):
                    if load[hi] - load[lo] < 2:
                        break
                    for group, held in enumerate(members):
                        if group not in self._lost and hi in held[1:] and lo not in held:
                            return group, hi, lo
            return None

        changes: list[Change] = []
        while (move := next_move()) is not None:
            group, hi, lo = move
            held = members[group]
            held.remove(hi)
            held.append(lo)  # last in promotion order: the least up to date
            load[hi] -= 1
            load[lo] += 1
            self._freshness.pop((group, hi), None)
            self._rebuilds += 1
            changes += [CopyTask(group, held[0], lo), ReplicaDropped(group, hi)]
        if changes:
            groups = tuple(
                GroupReplicas(h[0], tuple(h[1:])) if h else GroupReplicas("") for h in members
            )
            self._placement = Placement(current.front_ends, groups)
        return changes

    def _rebalance(self) -> list[Change]:
        """Move primaries evenly over the UP FEs (lost groups stay as they are)."""
        if self._placement is None:
            return []
        up = self._up()
        current = self._placement
        balanced, moves = rebalance_primaries(self._without_lost(current), up)
        self._placement = self._with_lost(balanced, current)
        self._primary_moves += len(moves)
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
        current = self._placement
        assert current is not None
        rank = {fe: i for i, fe in enumerate(up)}
        primaries = dict.fromkeys(up, 0)
        replicas = dict.fromkeys(up, 0)
        for group, r in enumerate(current.groups):
            if group not in self._lost:
                for fe in r.members:
                    replicas[fe] += 1
                if r.primary:
                    primaries[r.primary] += 1
        groups = list(current.groups)
        changes: list[Change] = []
        for group in sorted(self._lost):
            survivor = groups[group].primary
            fe = survivor or min(up, key=lambda f: (primaries[f], replicas[f], rank[f]))
            primaries[fe] += 1
            replicas[fe] += 1
            if from_replicas and survivor:
                groups[group], recovered = self._recover_from_replicas(group, groups[group])
                changes += recovered
                continue
            groups[group] = GroupReplicas(fe)
            for other in current.front_ends:
                self._freshness.pop((group, other), None)
            self._lineage.forget(group)
            self._reloads += 1
            changes.append(ReloadTask(group, fe))
        self._lost.clear()
        self._placement = Placement(current.front_ends, tuple(groups))
        return changes + self._settle(None)

    def _full_reset(self) -> list[Change]:
        up = self._require_up(ResetType.FULL_RESET.value)
        placed = place(up, self._groups, self._config.replicas)
        self._placement = Placement(tuple(self._start_order), placed.groups)
        self._lost.clear()
        self._freshness.clear()
        changes: list[Change] = []
        for group, r in enumerate(placed.groups):
            self._lineage.forget(group)
            changes.append(ReloadTask(group, r.primary))
            changes += [CopyTask(group, r.primary, fe) for fe in r.secondaries]
            self._rebuilds += len(r.secondaries)
        self._reloads += self._groups
        return changes + self._settle(None)

    def _remove(self, fe_id: str) -> list[Change]:
        member = self._member(fe_id)
        if member.state in _RUNNING:
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

    def _start_rank(self, fe_id: str) -> int:
        """1-based position in the start order; 0 if the FE never came up."""
        return self._start_order.index(fe_id) + 1 if fe_id in self._start_order else 0

    def _group_total(self) -> int:
        return min(self._config.replicas, self._pool_size)

    def _pool_reason(self) -> str:
        return "" if self._started and self._verdict.has_quorum else self._verdict.detail

    def _group_reason(self, group: int) -> str:
        reason = self._pool_reason()
        if reason or self._placement is None:
            return reason
        alive = self._placement[group].replica_count
        if alive >= MIN_REPLICAS_FOR_SERVICE and group not in self._lost:
            return ""
        running = f"{alive} of {self._group_total()} replicas running"
        if group in self._lost:
            if self._wrong_order:
                return f"routing group {group} has lost quorum: {self._wrong_order}"
            return f"routing group {group} has lost quorum: {running}; {_RECOVERY_HINT}"
        return (
            f"routing group {group} is not served yet: {running}, "
            f"{MIN_REPLICAS_FOR_SERVICE} needed; start another front end"
        )

    def _status_group_state(self, group: int) -> StatusGroupState:
        p = self._placement
        if p is None or group in self._lost:
            return StatusGroupState.QUORUM_LOSS
        state = group_state(p[group].replica_count, self._group_total())
        return _GROUP_STATES[state.name]

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

    def _member(self, fe_id: str) -> _Member:
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
