"""What the hot-path benchmarks share: options, result rows, percentiles, process readings.

A *row* is one comparison: a poolsim figure, a baseline figure measured in the same run, their
ratio and the target the ratio must meet; a *figure* row (``make_figure``) is a measurement with
no baseline and no target, reported as it is (e.g. a fail-over time); ``make_comparison`` makes
a figure row that has a baseline and a ratio but no target (none is given): reported, never
judged. A *result* is one benchmark (one ``--only`` name): its rows, or why it was skipped or
failed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GIB = 1024**3
_CPUCLOCK_SCHED = 2  # Linux: a process CPU-time clock id is (~pid << 3) | this


@dataclass(frozen=True, slots=True)
class Options:
    """Sizes of every benchmark; ``quick()`` is the short version the tests run."""

    quick: bool = False
    seed: int = 1
    # routing-core
    core_pairs: int = 100
    core_conference: int = 10
    core_messages: int = 200_000  # per timed repetition (two-party); a tenth for the conference
    core_repeats: int = 5
    core_latency_samples: int = 50_000
    # grpc-e2e
    e2e_messages: int = 6_000  # per measured round, in each of the two modes
    e2e_warmup: int = 1_000
    e2e_concurrency: int = 32
    e2e_rounds: int = 3
    e2e_store: str = "sqlite"
    # fanout
    fanout_watchers: int = 80
    fanout_publications: int = 500  # per measured round
    fanout_warmup: int = 20
    fanout_rounds: int = 3
    # enterprise
    ent_front_ends: int = 3
    ent_users: int = 30
    ent_messages: int = 3_000  # per measured round: cross-node, same-node, one Standard node
    ent_warmup: int = 300
    ent_concurrency: int = 16  # also the messages in flight of the batched / bare Ray calls
    ent_rounds: int = 3
    ent_link_messages: int = 20_000  # batched / bare Ray calls: per measured round, each way
    ent_link_warmup: int = 2_000
    ent_failover_timeout: float = 60.0
    # memory
    memory_users: int = 80_000
    memory_fallback_users: int = 20_000
    memory_contacts: int = 80
    memory_subscriptions: int = 40
    memory_timeout: float = 420.0  # 80,000 users x 80 contacts into SQLite: about 3 min
    memory_target_users: int = 80_000
    #: one Standard front end holding Lync's largest pool's users (the whole pool's budget,
    #: 12 front ends, is 4 GiB)
    memory_target_bytes: int = 1 * GIB

    @classmethod
    def quick_options(cls, seed: int = 1) -> Options:
        return cls(
            quick=True,
            seed=seed,
            core_pairs=20,
            core_messages=50_000,
            core_repeats=3,
            core_latency_samples=10_000,
            e2e_messages=2_000,
            e2e_warmup=300,
            e2e_concurrency=16,
            e2e_rounds=1,
            fanout_publications=60,
            fanout_warmup=10,
            fanout_rounds=1,
            ent_messages=1_000,
            ent_warmup=200,
            ent_rounds=1,
            ent_link_messages=3_000,
            ent_link_warmup=500,
            memory_users=5_000,
            memory_fallback_users=2_000,
            memory_timeout=60.0,
        )


@dataclass(slots=True)
class Row:
    """One comparison. ``ratio`` = poolsim / baseline; met when it is on the right side.

    A figure row (``make_figure``) has no baseline, ratio nor target (all NaN): it is reported
    as measured and never fails a run. A figure row made by ``make_comparison`` has a baseline
    and a ratio, and no target (NaN): reported the same way."""

    name: str
    unit: str
    poolsim: float
    baseline: float
    ratio: float
    target: float
    higher_is_better: bool = True
    target_source: str = "given"  # "given" by the brief, or "assumed" (none was given)
    met: bool = False
    latency_us: dict[str, float] = field(default_factory=dict)  # poolsim_p50, baseline_p99, ...
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.is_figure:
            self.met = True
            return
        self.met = self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target

    @property
    def is_figure(self) -> bool:
        """A measurement with no target (see the class doc)."""
        return self.target_source == "none"

    @property
    def target_text(self) -> str:
        if self.is_figure:
            return "none (figure)"
        sign = ">=" if self.higher_is_better else "<="
        return f"{sign} {self.target:g}" + (" (assumed)" if self.target_source != "given" else "")


def make_row(
    name: str,
    unit: str,
    poolsim: float,
    baseline: float,
    target: float,
    *,
    higher_is_better: bool = True,
    target_source: str = "given",
    latency_us: dict[str, float] | None = None,
    details: dict[str, Any] | None = None,
) -> Row:
    ratio = poolsim / baseline if baseline > 0 else math.nan
    return Row(
        name,
        unit,
        poolsim,
        baseline,
        ratio,
        target,
        higher_is_better,
        target_source,
        latency_us=latency_us or {},
        details=details or {},
    )


def make_figure(name: str, unit: str, value: float, details: dict[str, Any] | None = None) -> Row:
    """A figure with no baseline and no target: reported, never judged."""
    nan = math.nan
    return Row(name, unit, value, nan, nan, nan, True, "none", details=details or {})


def make_comparison(
    name: str,
    unit: str,
    poolsim: float,
    baseline: float,
    *,
    latency_us: dict[str, float] | None = None,
    details: dict[str, Any] | None = None,
) -> Row:
    """poolsim against a baseline measured in the same run, where no target is given: a figure
    row (never judged) that carries the baseline and the ratio."""
    return make_row(
        name,
        unit,
        poolsim,
        baseline,
        math.nan,
        target_source="none",
        latency_us=latency_us,
        details=details,
    )


@dataclass(slots=True)
class Result:
    """One benchmark: ``ok`` with rows, ``skipped`` with a reason, or ``failed`` with the error."""

    name: str
    status: str = "ok"
    rows: list[Row] = field(default_factory=list)
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows"] = [
            {**asdict(r), "target_text": r.target_text, "is_figure": r.is_figure} for r in self.rows
        ]
        return out


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of unsorted ``values`` (NaN when there are none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(prefix: str, seconds: list[float]) -> dict[str, float]:
    """p50 and p99 in microseconds, keyed ``<prefix>_p50`` and ``<prefix>_p99``."""
    return {
        f"{prefix}_p50": percentile(seconds, 50) * 1e6,
        f"{prefix}_p99": percentile(seconds, 99) * 1e6,
    }


def median(values: list[float]) -> float:
    return percentile(values, 50)


def rss_bytes(pid: int | None = None) -> int:
    """VmRSS of a process (this one by default) from /proc."""
    path = Path(f"/proc/{pid or 'self'}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in {path}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (every thread, live or ended): its
    CPU-time clock, to the nanosecond (Linux's per-process clock id for ``pid``, what
    ``clock_getcpuclockid`` gives), or /proc/<pid>/stat's, in clock ticks (10 ms), where that
    clock cannot be read. Ticks would set the resolution of a short benchmark round."""
    try:
        return time.clock_gettime(((~pid) << 3) | _CPUCLOCK_SCHED)
    except OSError:
        pass
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)
