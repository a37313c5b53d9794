"""Deadlines on the injected monotonic clock, run when the engine's ``tick`` says so."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable


class Timer:
    __slots__ = ("action", "cancelled", "deadline")

    def __init__(self, deadline: float, action: Callable[[], None]) -> None:
        self.deadline = deadline
        self.action = action
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class TimerHeap:
    """A min-heap of timers. Cancelled ones are skipped when they come up.

    Owners keep at most one live timer per purpose and re-arm it from the action (checking the
    real deadline then), so the heap does not grow with the message rate.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, deadline: float, action: Callable[[], None]) -> Timer:
        timer = Timer(deadline, action)
        heapq.heappush(self._heap, (deadline, next(self._seq), timer))
        return timer

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self, now: float) -> int:
        """Run every timer due at ``now`` (including those that due ones schedule)."""
        ran = 0
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            timer.cancelled = True
            timer.action()
            ran += 1
        return ran
