"""Python's garbage collector while a load driver runs (``quiet_gc``): what lives for the run
is frozen out of its scans and its thresholds are raised, restored afterwards.

A driver allocates mostly short-lived objects (calls, futures, replies) on top of a large heap
that lives to the end (users, contacts, schedules, signed-in sessions); with Python's default
thresholds the collector kept rescanning that heap. Measured with py-spy at 16,380 users per
front end, it took about a tenth of the driver's processor.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: the collector's thresholds while a driver runs: its young objects are mostly short-lived
#: (calls, futures, replies), and what lives on (users, sessions, schedules) is frozen
GC_THRESHOLDS = (20_000, 20, 20)
_quiet: list[tuple[int, ...]] = []  # the thresholds before the outermost ``quiet_gc``


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect less while driving: freeze what exists (the population, the schedule, and
    later the signed-in sessions: ``freeze_heap``) out of the collector's scans and raise
    its thresholds; restored when the last driver of the process ends (drivers may nest)."""
    if not _quiet:
        _quiet.append(gc.get_threshold())
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    else:
        _quiet.append(_quiet[0])
    try:
        yield
    finally:
        old = _quiet.pop()
        if not _quiet:
            gc.set_threshold(*old)
            gc.unfreeze()


def freeze_heap() -> None:
    """Move what lives now out of the collector's scans (only inside ``quiet_gc``)."""
    if _quiet:
        gc.freeze()
