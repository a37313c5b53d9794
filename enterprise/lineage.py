"""Whose history is whose: what lets a returning replica catch up with only what it missed.

Every routing group lives through **epochs**: a new one begins each time its primary changes
(promotion, recovery, rebalancing), at the sequence number the new primary had then (its
``start``; as last reported, so possibly a little low, which errs towards a whole copy). Within
one epoch every replica holds a prefix of the same stream of writes (the primary's). A replica
that left (its front end went down) is remembered with the epoch it was last live in; when it
returns at sequence ``seq``:

* if it comes back in the epoch it left, or ``seq`` is no later than the start of the epoch
  that followed it, its history is a prefix of today's: sending it the writes after ``seq``
  (``enterprise.local_store.LocalReplicaStore.changes_since``) brings it up to date;
* otherwise it may hold writes nobody acknowledged (it was a primary that died with writes not
  yet shipped) that the next primary never had: only a whole copy is safe;
* a replica the lineage knows nothing of (its group was reloaded from the back end since, or
  this fabric never saw it leave) gets a whole copy, or is dropped if nobody needs it.

Pure: no I/O, no clock. Owned by ``enterprise.fabric.Fabric``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Lineage:
    #: the current epoch of each group (0 until its primary first changes)
    epochs: dict[int, int] = field(default_factory=dict)
    #: (group, epoch) -> the new primary's sequence when that epoch began
    starts: dict[tuple[int, int], int] = field(default_factory=dict)
    #: (group, front end) -> the epoch a replica that left was last live in
    departed: dict[tuple[int, str], int] = field(default_factory=dict)

    def epoch(self, group: int) -> int:
        return self.epochs.get(group, 0)

    def left(self, group: int, fe: str) -> None:
        """``fe``'s replica of ``group`` went down (with its front end)."""
        self.departed[(group, fe)] = self.epoch(group)

    def begin(self, group: int, start: int) -> None:
        """``group`` has a new primary, which held writes up to ``start``."""
        epoch = self.epoch(group) + 1
        self.epochs[group] = epoch
        self.starts[(group, epoch)] = start

    def epoch_of(self, group: int, fe: str) -> int:
        """The epoch ``fe``'s replica of ``group`` was last live in (today's if it never left)."""
        return self.departed.get((group, fe), self.epoch(group))

    def knows(self, group: int, fe: str) -> bool:
        """Whether a replica of ``group`` that ``fe`` brings back has a history known here."""
        return (group, fe) in self.departed

    def is_prefix(self, group: int, epoch: int, seq: int, of_epoch: int) -> bool:
        """Whether a replica last live in ``epoch`` at ``seq`` holds a prefix of the history of
        a replica live in ``of_epoch`` (>= ``epoch``): same epoch, or ``seq`` no later than the
        start of the next one."""
        if epoch == of_epoch:
            return True
        if epoch > of_epoch:
            return False
        start = self.starts.get((group, epoch + 1))
        return start is not None and seq <= start

    def rejoined(self, group: int, fe: str) -> None:
        """``fe``'s replica of ``group`` is live again (caught up, or given a whole copy)."""
        self.departed.pop((group, fe), None)

    def forget(self, group: int) -> None:
        """``group`` was reloaded from the back end: no replica out there is a prefix of it."""
        for key in [k for k in self.departed if k[0] == group]:
            del self.departed[key]
        self.begin(group, 0)

    def forget_front_end(self, fe: str) -> None:
        for key in [k for k in self.departed if k[1] == fe]:
            del self.departed[key]
