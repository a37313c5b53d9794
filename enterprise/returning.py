"""Replicas that come back: a front end that registers again brings the replicas its local
store kept (``held``, ``{group: sequence}``), and the pool manager decides, group by group,
what becomes of each. Functions over the fabric's bookkeeping, which they are handed: the
``Lineage`` of every group, the freshness of every replica (``{(group, fe): sequence}``) and
the set of lost groups; they update those and return what changed. The caller
(``enterprise.fabric.Fabric``) counts the changes and publishes.

The rules:

* A replica that returns to a group missing one is taken back and caught up from the primary
  with only what it missed (``CatchUpTask``); a whole ``CopyTask`` when the lineage cannot
  vouch for its history. One nobody needs is dropped (``ReplicaDropped``).
* A lost group (fewer than 2 live replicas) with 2 of its replicas live again, the returning
  ones included, is recovered from them: the freshest (latest epoch, then highest sequence,
  then the current primary) becomes primary and the others catch up from it
  (``GroupRecovered``); unless a two-front-end pool came back in the wrong order, whose
  groups wait for quorum-loss recovery.
"""

from __future__ import annotations

from collections.abc import Mapping

from enterprise.changes import CatchUpTask, Change, CopyTask, GroupRecovered, ReplicaDropped
from enterprise.lineage import Lineage
from enterprise.placement import MIN_REPLICAS_FOR_SERVICE, GroupReplicas, Placement

#: a replica's freshness: ``{(group, fe): sequence}``
Freshness = dict[tuple[int, str], int]


def readmit(
    placement: Placement,
    fe_id: str,
    held: Mapping[int, int],
    *,
    lineage: Lineage,
    freshness: Freshness,
    lost: set[int],
    group_total: int,
    wait_for_recovery: bool,
) -> tuple[Placement, list[Change]]:
    """Take back the replicas ``fe_id`` brought back where their group misses one; drop the
    others. Lost groups are recovered once 2 replicas are live, unless
    ``wait_for_recovery`` (a two-front-end pool back in the wrong order)."""
    groups = list(placement.groups)
    changes: list[Change] = []
    for group, seq in sorted(held.items()):
        r = groups[group]
        if fe_id in r.members:
            continue
        if not lineage.knows(group, fe_id) or r.replica_count >= group_total:
            changes.append(ReplicaDropped(group, fe_id))
            lineage.rejoined(group, fe_id)
            continue
        freshness[(group, fe_id)] = seq
        if group in lost:
            groups[group] = _joined(r, fe_id)
            enough = groups[group].replica_count >= MIN_REPLICAS_FOR_SERVICE
            if enough and not wait_for_recovery:
                groups[group], recovered = recover_from_replicas(
                    group, groups[group], lineage=lineage, freshness=freshness, lost=lost
                )
                changes += recovered
            continue
        if not r.primary:  # pragma: no cover - a group not lost has a primary
            changes.append(ReplicaDropped(group, fe_id))
            continue
        groups[group] = GroupReplicas(r.primary, (*r.secondaries, fe_id))
        changes.append(catch_up(group, r.primary, fe_id, lineage=lineage, freshness=freshness))
    return Placement(placement.front_ends, tuple(groups)), changes


def _joined(r: GroupReplicas, fe_id: str) -> GroupReplicas:
    if not r.primary:
        return GroupReplicas(fe_id)
    return GroupReplicas(r.primary, (*r.secondaries, fe_id))


def recover_from_replicas(
    group: int, r: GroupReplicas, *, lineage: Lineage, freshness: Freshness, lost: set[int]
) -> tuple[GroupReplicas, list[Change]]:
    """Lost ``group`` has 2 or more live replicas again: the freshest (latest epoch, then
    highest sequence, then the current primary) serves it, the others catch up."""
    members = r.members

    def rank(i: int) -> tuple[int, int, int]:
        fe = members[i]
        return lineage.epoch_of(group, fe), freshness.get((group, fe), 0), -i

    best = members[max(range(len(members)), key=rank)]
    others = tuple(fe for fe in members if fe != best)
    changes: list[Change] = [GroupRecovered(group, best, len(members))]
    changes += [catch_up(group, best, fe, lineage=lineage, freshness=freshness) for fe in others]
    lineage.begin(group, freshness.get((group, best), 0))
    for fe in members:
        lineage.rejoined(group, fe)
    lost.discard(group)
    return GroupReplicas(best, others), changes


def catch_up(
    group: int, primary: str, fe_id: str, *, lineage: Lineage, freshness: Freshness
) -> CatchUpTask | CopyTask:
    """How ``fe_id``'s replica of ``group`` is brought up to ``primary``'s: only what it
    missed when its history is a prefix of the primary's, else a whole copy."""
    seq = freshness.get((group, fe_id), 0)
    prefix = lineage.is_prefix(
        group, lineage.epoch_of(group, fe_id), seq, lineage.epoch_of(group, primary)
    )
    lineage.rejoined(group, fe_id)
    if prefix and seq <= freshness.get((group, primary), seq):
        return CatchUpTask(group, primary, fe_id, seq)
    freshness.pop((group, fe_id), None)
    return CopyTask(group, primary, fe_id)
