"""An edition-neutral picture of a pool, what GetPoolStatus and `poolsim status` show."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class FrontEndState(Enum):
    STARTING = "starting"
    UP = "up"
    DRAINING = "draining"
    DOWN = "down"


class GroupState(Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    QUORUM_LOSS = "quorum-loss"


class QuorumState(Enum):
    WAITING_FOR_FIRST_START = "waiting-for-first-start"
    HAS_QUORUM = "has-quorum"
    LOST = "lost"


class ResetType(Enum):
    """``Reset-CsPoolRegistrarState -ResetType`` (SPEC section 2), by Lync's own names: what the
    admin API's ``RESET_TYPE_*`` stand for, from the adapter to the fabric."""

    SERVICE_RESET = "ServiceReset"
    QUORUM_LOSS_RECOVERY = "QuorumLossRecovery"
    FULL_RESET = "FullReset"
    MACHINE_STATE_REMOVED = "MachineStateRemoved"
    #: poolsim's own: quorum-loss recovery from the freshest surviving replica (Lync reloads
    #: from the back end, losing what was not backed up)
    FROM_REPLICAS = "QuorumLossRecoveryFromReplicas"


@dataclass(frozen=True, slots=True)
class FrontEndInfo:
    id: str
    address: str
    metrics_address: str
    state: FrontEndState
    primaries: int = 0
    secondaries: int = 0
    endpoints: int = 0
    start_order: int = 0


@dataclass(frozen=True, slots=True)
class RoutingGroupInfo:
    id: int
    primary: str
    secondaries: tuple[str, ...]
    state: GroupState
    users: int


@dataclass(frozen=True, slots=True)
class PoolStatusInfo:
    edition: str  # "standard" | "enterprise"
    pool_name: str
    front_ends: tuple[FrontEndInfo, ...]
    routing_groups: tuple[RoutingGroupInfo, ...]
    quorum: QuorumState
    quorum_detail: str
    users_provisioned: int
    endpoints_signed_in: int
    users_signed_in: int
    started_at: float
    extra: dict[str, str] = field(default_factory=dict)
