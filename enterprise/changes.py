"""What a fabric call changed: the records the caller (the fabric actor) acts on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from enterprise.placement import Promotion
from enterprise.quorum import QuorumState
from pool.status import FrontEndState


@dataclass(frozen=True, slots=True)
class FrontEndChanged:
    """FE ``fe`` moved from ``old`` (``None``: first seen) to ``new``, for ``reason``."""

    fe: str
    old: FrontEndState | None
    new: FrontEndState
    reason: str


@dataclass(frozen=True, slots=True)
class FrontEndRemoved:
    """FE ``fe`` left the pool for good (MACHINE_STATE_REMOVED); the pool now has ``pool_size``."""

    fe: str
    pool_size: int


@dataclass(frozen=True, slots=True)
class CopyTask:
    """Copy routing group ``group``'s persistent data from ``from_fe`` (its primary) to
    ``to_fe``, which is now one of its secondaries."""

    group: int
    from_fe: str
    to_fe: str


@dataclass(frozen=True, slots=True)
class CatchUpTask:
    """``to_fe`` is back with its replica of ``group`` at sequence ``since``: its primary
    ``from_fe`` sends it only the writes it missed (a whole copy if it cannot tell which)."""

    group: int
    from_fe: str
    to_fe: str
    since: int


@dataclass(frozen=True, slots=True)
class GroupRecovered:
    """Routing group ``group`` left quorum loss because its replicas came back:
    ``replicas_alive`` of them, ``primary`` (the freshest) serving it."""

    group: int
    primary: str
    replicas_alive: int


@dataclass(frozen=True, slots=True)
class ReplicaDropped:
    """FE ``fe`` no longer holds a replica of ``group`` (it moved to an emptier FE)."""

    group: int
    fe: str


@dataclass(frozen=True, slots=True)
class ReloadTask:
    """Load routing group ``group`` from the back-end store onto ``fe``, its new primary,
    replacing whatever copy ``fe`` had. Writes not yet backed up are lost; copies to its
    secondaries follow as ``CopyTask``s. After FULL_RESET every FE drops every replica it
    holds first."""

    group: int
    fe: str


@dataclass(frozen=True, slots=True)
class GroupQuorumLost:
    """Routing group ``group`` fell to ``replicas_alive`` live replicas: it is not served until
    quorum-loss recovery."""

    group: int
    replicas_alive: int


@dataclass(frozen=True, slots=True)
class QuorumChanged:
    """The pool's quorum state moved from ``old`` to ``new``; ``detail`` says why."""

    old: QuorumState
    new: QuorumState
    detail: str


@dataclass(frozen=True, slots=True)
class TableSwapped:
    """A new ``RoutingTable`` with this version replaced the previous one."""

    version: int


#: Everything a call may report; ``Promotion`` (enterprise.placement) is a secondary made
#: primary, whose users re-register on ``new``.
Change: TypeAlias = (
    FrontEndChanged
    | FrontEndRemoved
    | Promotion
    | CopyTask
    | CatchUpTask
    | GroupRecovered
    | ReplicaDropped
    | ReloadTask
    | GroupQuorumLost
    | QuorumChanged
    | TableSwapped
)
