"""`--pool-cpus LIST`: the pool a run starts on some of this machine's processors, the load
generator on the others, as if each had a server of its own.

On a machine of a few cores the driver and the pool otherwise take processor time from each
other: a saturated front end slows the driver down (and the run is judged the machine's, not
the pool's), and a busy driver hides how far the pool could go. Pinned apart, the pool can be
driven past its own limit by a driver that still has a core to itself, which is how a
capacity plan finds the knee and what the pool does past it.

Linux's affinity is per thread and inherited at creation: while the pool starts, every thread
of this process is put on the pool's processors (so the Standard server, or a new local Ray
instance and every worker it will ever start, inherits them), then back on the driver's.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


def cpus_option(text: str) -> frozenset[int]:
    """``--pool-cpus 1`` / ``1,3`` / ``2-3`` (an argparse type): processor numbers, as
    ``taskset -c`` reads them; each must be one this process may run on."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected processor numbers like 1, 1,3 or 2-3"
            )
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: a range runs low to high")
        cpus.update(range(low, high + 1))
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise argparse.ArgumentTypeError(
            f"{text!r}: this process may run on processors {show(allowed)} only"
        )
    if cpus == allowed:
        raise argparse.ArgumentTypeError(
            f"{text!r} is every processor this process may use ({show(allowed)}): leave at "
            "least one for the load generator"
        )
    return frozenset(cpus)


def show(cpus: Iterable[int]) -> str:
    """``0-2,5``: as ``taskset -c`` and ``--pool-cpus`` write them."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and runs[-1][1] == cpu - 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def driver_cpus(pool: frozenset[int]) -> frozenset[int]:
    """The processors the driver keeps: every one this process may use but the pool's."""
    return frozenset(os.sched_getaffinity(0)) - pool


def pin_process(cpus: Iterable[int]) -> None:
    """Every thread of this process on ``cpus`` (threads it starts later inherit them)."""
    wanted = set(cpus)
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), wanted)
        except (ProcessLookupError, FileNotFoundError):  # the thread ended meanwhile
            continue


@contextmanager
def pool_started_on(pool: frozenset[int] | None) -> Iterator[None]:
    """Inside: this process's threads run on ``pool`` (what a pool started now inherits);
    after: on the driver's processors. Nothing is pinned when ``pool`` is None."""
    if pool is None:
        yield
        return
    driver = driver_cpus(pool)
    pin_process(pool)
    try:
        yield
    finally:
        pin_process(driver)


def add_pool_cpus_argument(parser: argparse.ArgumentParser) -> None:
    """``--pool-cpus``, as ``poolsim run`` and ``poolsim plan`` take it."""
    parser.add_argument(
        "--pool-cpus",
        type=cpus_option,
        metavar="LIST",
        help="run the pool this run starts on these processors (1, 1,3 or 2-3, as taskset "
        "-c) and the load generator on the others, as if each had its own server: the pool "
        "can then be driven past its own limit (default: both anywhere)",
    )
