"""Python's garbage collector in a front end process: fewer, cheaper collections.

With the interpreter's default thresholds (700, 10, 10) a loaded front end ran a full
collection every 1.5 to 3 s, each scanning its whole heap (the directory, the contact lists,
every registration: 400,000 objects at 3,000 users) for 200 to 270 ms, during which no call
moved: the pool's own histograms (kept by its handlers) did not see it, its clients' p99 did
(402 ms against 21.5 ms with :data:`THRESHOLDS`, measured on a Standard front end pinned to one
core at 3,000 users x speedup 20, level high). Two remedies, as the load driver takes them
(``bench.collector``):

* :func:`tune`: higher thresholds, so short-lived objects (calls, replies, events) die young
  instead of reaching the old generation, and the old one is scanned rarely;
* :func:`settle`: collect once, then freeze what lives (``gc.freeze``) out of later scans;
  for what a front end holds until it stops: its users and their contacts, after it loads or
  provisions them (not the registrations: a cycle among frozen objects that later dies is
  never collected, and sessions end).

Both are the process's business: a front end's entry point calls :func:`tune`, and
:func:`settle` does nothing in a process that did not (a test, a client embedding a server).
"""

from __future__ import annotations

import gc

#: young, middle and old thresholds: a young collection every 50,000 net allocations
THRESHOLDS = (50_000, 10, 10)


_tuned = False


def tune() -> None:
    """Raise this process's collector thresholds (:data:`THRESHOLDS`); :func:`settle` then
    works here."""
    global _tuned
    gc.set_threshold(*THRESHOLDS)
    _tuned = True


def settle() -> None:
    """In a tuned process: collect, then freeze what lives now out of later scans."""
    if _tuned:
        gc.collect()
        gc.freeze()
