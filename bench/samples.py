"""Gauge samples at bounded cost: one per second for the recent past, then means over 10 s,
then over a minute (as :mod:`bench.series` does for latency histograms).

A sample is ``(t, value, ...)``; each kept one ends with its *weight*, the number of
one-second samples it stands for, so a mean over any span stays exact whatever the tier:

    age < live_s            every sample, weight 1
    live_s .. tens_s        one per 10 s of the run: the weighted mean of its samples
    tens_s and older        one per minute: the weighted mean of its 10-s samples

A front end sampled once a second for 12 hours then keeps about 600 + 2,160 + 360 samples
instead of 43,200. ``fresh`` holds the raw samples not yet taken (:meth:`take_fresh`): the run
folder appends them to its file at full resolution as it goes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

Sample = tuple[float, ...]

LIVE_S = 600.0
TENS_S = 6 * 3600.0


def merge(group: list[Sample]) -> Sample:
    """One sample for ``group`` (weighted samples): the weighted mean of each field, t too,
    weighing the sum of the weights."""
    weight = sum(s[-1] for s in group)
    width = len(group[0]) - 1
    means = [sum(s[i] * s[-1] for s in group) / weight for i in range(width)]
    return (*means, weight)


def _seal(
    source: deque[Sample], into: list[Sample] | deque[Sample], span: float, cut: float
) -> None:
    """Move from the front of ``source`` each whole ``span`` of the run that ended before
    ``cut``, merged into one sample."""
    while source:
        k = source[0][0] // span
        if (k + 1) * span > cut:
            return
        group = []
        while source and source[0][0] // span == k:
            group.append(source.popleft())
        into.append(merge(group))


class Samples:
    """The bounded samples of one gauge series (see the module docstring)."""

    def __init__(
        self, live_s: float = LIVE_S, tens_s: float = TENS_S, *, keep_fresh: bool = True
    ) -> None:
        self.keep_fresh = keep_fresh  # False: nobody takes the raw samples
        self.live_s = live_s
        self.tens_s = tens_s
        self._minutes: list[Sample] = []
        self._tens: deque[Sample] = deque()
        self._recent: deque[Sample] = deque()
        self.fresh: list[Sample] = []

    def append(self, sample: Sample) -> None:
        """A new sample (without weight), no older than the last one."""
        if self.keep_fresh:
            self.fresh.append(sample)
        self._recent.append((*sample, 1))
        end = sample[0] + 1.0  # a sample stands for its second
        _seal(self._recent, self._tens, 10.0, end - self.live_s)
        _seal(self._tens, self._minutes, 60.0, end - self.tens_s)

    @classmethod
    def of(cls, kept: Iterable[Sample]) -> Samples:
        """Samples already kept (weighted, as iterating gives them: from a checkpoint or a
        worker), in order; appending to the copy is not meant."""
        out = cls(keep_fresh=False)
        out._minutes = list(kept)
        return out

    def take_fresh(self) -> list[Sample]:
        """The raw samples appended since the last call."""
        out, self.fresh = self.fresh, []
        return out

    def __iter__(self) -> Iterator[Sample]:
        yield from self._minutes
        yield from self._tens
        yield from self._recent

    def __len__(self) -> int:
        return len(self._minutes) + len(self._tens) + len(self._recent)


def weighted_mean(samples: list[Sample], field: int, width: int) -> float:
    """The mean of ``field`` over samples of ``width`` fields, each weighing its weight (the
    field after them; 1 for a raw sample without one); 0 without any."""

    def w(s: Sample) -> float:
        return s[width] if len(s) > width else 1.0

    total = sum(w(s) for s in samples)
    return sum(s[field] * w(s) for s in samples) / total if total else 0.0
