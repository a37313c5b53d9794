"""The operator's recoveries of a pool whose groups lost quorum (``Reset-CsPoolRegistrarState``
QUORUM_LOSS_RECOVERY, poolsim's FROM_REPLICAS, and FULL_RESET): functions over the fabric's
placement and bookkeeping (``enterprise.returning``'s lineage, freshness and lost groups),
which they update; they return the new placement and what changed, for
``enterprise.fabric.Fabric`` to count, settle and publish.

* QUORUM_LOSS_RECOVERY: every lost group gets a primary on an UP FE (the survivor if it has
  one, else the FE with fewest primaries, then fewest replicas, then first started) and is
  reloaded from the back-end store (``ReloadTask``); the fabric then copies it to new
  secondaries.
* FROM_REPLICAS: as QUORUM_LOSS_RECOVERY, but a group with a surviving replica is served from
  it as it is (``GroupRecovered``, nothing lost); only groups with no live replica at all are
  reloaded.
* FULL_RESET: every group is placed anew over the UP FEs and reloaded.
"""

from __future__ import annotations

from collections.abc import Sequence

from enterprise.changes import Change, CopyTask, ReloadTask
from enterprise.lineage import Lineage
from enterprise.placement import GroupReplicas, Placement, place
from enterprise.returning import Freshness, recover_from_replicas


def recover_lost(
    placement: Placement,
    up: Sequence[str],
    *,
    from_replicas: bool,
    lineage: Lineage,
    freshness: Freshness,
    lost: set[int],
) -> tuple[Placement, list[Change]]:
    """Give every group in ``lost`` a primary again (see the module docstring); ``lost``
    ends empty."""
    rank = {fe: i for i, fe in enumerate(up)}
    primaries = dict.fromkeys(up, 0)
    replicas = dict.fromkeys(up, 0)
    for group, r in enumerate(placement.groups):
        if group not in lost:
            for fe in r.members:
                replicas[fe] += 1
            if r.primary:
                primaries[r.primary] += 1
    groups = list(placement.groups)
    changes: list[Change] = []
    for group in sorted(lost):
        survivor = groups[group].primary
        fe = survivor or min(up, key=lambda f: (primaries[f], replicas[f], rank[f]))
        primaries[fe] += 1
        replicas[fe] += 1
        if from_replicas and survivor:
            groups[group], recovered = recover_from_replicas(
                group, groups[group], lineage=lineage, freshness=freshness, lost=lost
            )
            changes += recovered
            continue
        groups[group] = GroupReplicas(fe)
        for other in placement.front_ends:
            freshness.pop((group, other), None)
        lineage.forget(group)
        changes.append(ReloadTask(group, fe))
    lost.clear()
    return Placement(placement.front_ends, tuple(groups)), changes


def full_reset(
    up: Sequence[str],
    start_order: Sequence[str],
    groups: int,
    replicas: int,
    *,
    lineage: Lineage,
    freshness: Freshness,
    lost: set[int],
) -> tuple[Placement, list[Change]]:
    """Place every group anew over the ``up`` FEs, reload each on its primary and copy it to
    its secondaries; forget every replica's freshness and history."""
    placed = place(up, groups, replicas)
    lost.clear()
    freshness.clear()
    changes: list[Change] = []
    for group, r in enumerate(placed.groups):
        lineage.forget(group)
        changes.append(ReloadTask(group, r.primary))
        changes += [CopyTask(group, r.primary, fe) for fe in r.secondaries]
    return Placement(tuple(start_order), placed.groups), changes
