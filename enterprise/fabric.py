"""The pool manager's brain: the Windows Fabric role of an Enterprise pool (SPEC section 2).

``Fabric`` decides, for a pool of 2 to 12 front ends (FEs), which FEs are up, whether the pool
has quorum, where every routing group's replicas live and which FE is each group's home. It is
a pure, single-writer state machine: no framework, no I/O, no clock of its own. Time comes in
as ``now`` arguments, seconds on one monotonic clock of the caller (``Clock.monotonic()``). A
Ray actor wraps it thinly: it feeds in registrations, heartbeats, Ray's actor-death signals and
operator commands, calls ``check(now)`` every heartbeat interval, and carries out the
``Change`` values every call returns (copy a group, reload it from the back-end store, tell the
FEs that a new ``RoutingTable`` exists).

An FE's states and the moves between them, and Lync's two-FE rule, are in
``enterprise.front_ends`` (``_transition`` is the one method that moves an FE); what becomes of
the replicas an FE brings back is in ``enterprise.returning``; the operator's quorum-loss
recoveries in ``enterprise.recovery``; what the fabric shows (served or not, why, counters,
GetPoolStatus) in ``enterprise.fabric_view``.

Rules this module chooses (SPEC leaves them open):

* **Only UP FEs serve replicas.** An FE that leaves UP (crash, stop, drain) loses its place in
  the placement at once, but keeps its replicas in its own local store: when it registers
  again it says which it holds and how fresh each is (``register(held=...)``), and
  ``enterprise.returning`` takes them back or drops them. A DRAINING FE still counts as
  running for pool quorum (its process lives while its users move) but its primaries have
  already moved.
* **A routing group that falls below 2 live replicas is lost** (``GroupQuorumLost``), whatever
  the cause, until 2 of its replicas are live again (the returning ones included; see
  ``enterprise.returning``). ``reset(QUORUM_LOSS_RECOVERY)`` or ``reset(FULL_RESET)`` reloads
  it from the back-end store instead. A group that merely never had 2 replicas (a two-FE pool
  first started with one FE) is not lost: it gets its second copy when a spare FE comes.
* **A replica catching up is not a candidate.** Every ``CopyTask`` and ``CatchUpTask`` makes
  its target *catching up* (``catching_up``) until the caller says it was acknowledged
  (``caught_up``): live writes reach it before its catch-up lands, so it may lack acknowledged
  writes. Until then it is never promoted nor made primary by rebalancing, its freshness stays
  where its catch-up started, and its group is not healthy; a group whose live replicas are
  all catching up when its primary dies is lost (it waits for a caught-up one). A promotion
  brings the new primary's secondaries level; a task whose call failed is ordered again
  (``unfinished``).
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
from enterprise.fabric_core import FabricCore
from enterprise.fabric_view import FabricCounters, FabricSnapshot, ServiceVerdict, pool_status
from enterprise.front_ends import (
    DOWN,
    DRAINING,
    RUNNING,
    STARTING,
    TRANSITIONS,
    UP,
    IllegalTransition,
)
from enterprise.placement import Placement
from enterprise.quorum import QuorumVerdict
from enterprise.routing_table import RoutingTable
from pool.errors import FailedPrecondition, InvalidArgument
from pool.status import FrontEndState, PoolStatusInfo, ResetType

#: what other modules and tests import from here
__all__ = [
    "TRANSITIONS",
    "CatchUpTask",
    "Change",
    "CopyTask",
    "Fabric",
    "FabricConfig",
    "FabricCounters",
    "FrontEndChanged",
    "FrontEndRemoved",
    "GroupQuorumLost",
    "GroupRecovered",
    "IllegalTransition",
    "QuorumChanged",
    "ReloadTask",
    "ReplicaDropped",
    "ResetType",
    "RoutingTable",
    "ServiceVerdict",
    "TableSwapped",
]


class Fabric(FabricCore):
    """The pool manager. Single writer: one caller at a time (the wrapping actor).

    Every mutating call returns the ``Change``s it made, in order; read ``routing_table`` for
    the current snapshot. Unknown FEs raise ``NotFound``, impossible requests
    ``FailedPrecondition`` (``IllegalTransition`` for an FE state move), bad arguments
    ``InvalidArgument``: all from ``pool.errors``, with messages that say what to do.
    """

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
        return self._counters

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
        elif member.state in RUNNING:
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
        if member.state not in RUNNING:
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
            if member.state not in RUNNING:
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
        """FE ``fe_id`` holds group g's writes up to sequence ``sequences[g]``, without a gap
        (its contiguous high-water mark). On fail-over the live secondary with the highest
        is promoted (unreported: 0), never one still catching up (``catching_up``), whose
        freshness stays where its catch-up started until it is acknowledged."""
        member = self._member(fe_id)
        if member.state is not UP:
            raise FailedPrecondition(
                f"front end {fe_id} is {member.state.value}: it holds no replicas, so its "
                "freshness does not count"
            )
        self._check_sequences(fe_id, sequences)
        for group, seq in sequences.items():
            since = self._syncing.get((group, fe_id))
            # catching up, a replica holds without a gap no more than where it started from
            # (its own mark says so too; this keeps the fabric right whatever it is told)
            self._freshness[(group, fe_id)] = seq if since is None else min(seq, max(since, 0))

    def caught_up(self, group: int, fe_id: str) -> None:
        """The copy or catch-up ordered for ``fe_id``'s replica of ``group`` was acknowledged
        (``fe_id`` applied it): that replica holds every acknowledged write again, so it may
        be promoted, and counts as healthy. A replica not catching up, or of a group in quorum
        loss (its source is gone: the answer is stale), is left as it is."""
        self._check_group(group)
        if group not in self._lost:
            self._syncing.pop((group, fe_id), None)

    @property
    def catching_up(self) -> Mapping[tuple[int, str], int]:
        """Replicas with a copy or catch-up ordered and not yet acknowledged:
        ``{(group, fe): the sequence it catches up from}`` (-1 for a whole copy). They are
        never promoted nor made primaries by rebalancing, and a group with one is not
        healthy."""
        return MappingProxyType(self._syncing)

    def unfinished(self) -> list[Change]:
        """The copies and catch-ups to order again: those not acknowledged (their call
        failed) whose replica is a secondary of a group served by a live primary."""
        p = self._placement
        if p is None:
            return []
        changes: list[Change] = []
        for (group, fe), since in sorted(self._syncing.items()):
            r = p[group]
            if group in self._lost or fe not in r.secondaries:
                continue
            if since < 0:
                changes.append(CopyTask(group, r.primary, fe))
            else:
                changes.append(CatchUpTask(group, r.primary, fe, since))
        return changes

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
                self._two_fe.wrong_order = ""
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
        snapshot = FabricSnapshot(
            self._config.pool_name,
            self._pool_size,
            self._groups,
            self._group_total(),
            {fe: self._members[fe] for fe in self._ordered_ids()},
            self.start_order,
            self._placement,
            self._lost,
            self._verdict,
            self._started,
            self._started_at,
            self._table.version,
            self._counters,
            frozenset(self._syncing),
        )
        return pool_status(
            snapshot,
            users_per_group,
            endpoints_per_fe,
            now,
            users_signed_in=users_signed_in,
            wall_now=wall_now,
        )
