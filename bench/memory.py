"""Memory over a run: the driver's own resident set and every front end's, sampled as the
run goes, and the verdict "no growth after warm-up" that a soak is run for.

The driver's figure is its process's RSS (psutil); a front end's is the
``process_resident_memory_bytes`` of its /metrics (prometheus_client's process collector),
so an Enterprise front end on a Ray worker is measured in its own process. Samples go to
``report["memory"]["samples"]`` as ``{"t": run seconds, "driver": bytes, "front_ends":
{fe: bytes}}``; the pool's figure is the sum over its front ends.

A sum of resident sets counts every shared page (Python, grpc, Ray's libraries) once per
process. When the pool runs on this machine as this process's children (the Standard server
``poolsim run`` starts, or a local Ray instance with its front ends, fabric and Ray's own
processes), each sample also has ``"machine"``: the proportional set size of all of them but
the driver's own workers (``pool_pss``), which counts a shared page once: what the whole pool
takes of this machine's memory.

Growth is the least-squares slope of RSS against time over the samples after the warm-up,
per hour, in percent of the mean RSS there: a leak shows as a steady slope, the noise of the
allocator as none. A run with too little time after its warm-up (``MIN_SPAN_S``) is not
judged: an hour's figure from a minute of samples says nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs shipped

from bench.probe import scrape

INTERVAL_S = 10.0
MAX_SAMPLES = 2000  # past this, every other sample is dropped and the interval doubles
MIN_SPAN_S = 600.0
GROWTH_PCT_PER_HOUR = 5.0
MIB = 2**20

Sample = dict[str, Any]


def warm_up(ramp_end: float, settle: float, duration: float) -> float:
    """When memory is judged from: after the sign-in ramp and ``settle`` more seconds (the
    longest the model's populations take to reach their steady level), at most half the run."""
    return min(ramp_end + settle, duration / 2)


class MemorySampler:
    """Samples the driver and each front end every ``interval`` seconds until stopped;
    ``sink`` gets every sample as it is taken (the run folder)."""

    def __init__(
        self,
        front_ends: Mapping[str, str],
        t0: float,
        interval: float = INTERVAL_S,
        sink: Callable[[Sample], None] | None = None,
        max_samples: int = MAX_SAMPLES,
    ) -> None:
        self.front_ends = {fe: a for fe, a in front_ends.items() if a}
        self.t0 = t0
        self.interval = interval
        self.sink = sink
        self.max_samples = max_samples
        self.samples: list[Sample] = []
        self._me = psutil.Process()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def sample(self) -> Sample:
        t = time.perf_counter() - self.t0
        got = await asyncio.gather(*(self._rss(a) for a in self.front_ends.values()))
        fes = {fe: v for fe, v in zip(self.front_ends, got, strict=True) if v is not None}
        s: Sample = {"t": round(t, 3), "driver": self._me.memory_info().rss, "front_ends": fes}
        machine = await asyncio.to_thread(pool_pss, self._me)
        if machine is not None:
            s["machine"] = machine
        self.add(s)
        return s

    def add(self, s: Sample) -> None:
        self.samples.append(s)
        if self.sink is not None:
            self.sink(s)
        if len(self.samples) > self.max_samples:
            del self.samples[1::2]
            self.interval *= 2

    async def _rss(self, address: str) -> int | None:
        try:
            figures = await asyncio.to_thread(scrape, address)
        except OSError:
            return None  # a front end that is down has no figure this time
        rss = figures.get("rss_bytes")
        return int(rss) if rss is not None else None

    async def _loop(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.sample()  # the figure at the end


#: a process of this name is the driver's, not the pool's (``bench.workers``)
DRIVER_WORKER = "DriverWorker"


def pool_pss(me: psutil.Process) -> int | None:
    """The proportional set size of every process ``me`` started (recursively) but the
    driver's workers; None when it started none (the pool runs elsewhere)."""
    total, found = 0, False
    for child in me.children(recursive=True):
        try:
            if DRIVER_WORKER in " ".join(child.cmdline()):
                continue
            total += child.memory_full_info().pss
            found = True
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # gone, or not ours to read
    return total if found else None


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y against x (0 for fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def growth(points: Sequence[tuple[float, float]], threshold: float) -> dict[str, Any]:
    """One process's (or the pool's) figures after the warm-up: first, last and mean MiB,
    the slope in MiB and in percent of the mean per hour, and whether it is under
    ``threshold`` percent per hour."""
    if not points:
        return {"samples": 0, "ok": None}
    mean = sum(y for _, y in points) / len(points)
    per_s = slope(points)
    pct = 100.0 * per_s * 3600 / mean if mean else 0.0
    return {
        "samples": len(points),
        "first_mib": points[0][1] / MIB,
        "last_mib": points[-1][1] / MIB,
        "mean_mib": mean / MIB,
        "mib_per_hour": per_s * 3600 / MIB,
        "pct_per_hour": pct,
        "ok": pct < threshold,
    }


def pool_rss(s: Sample) -> float | None:
    fes = s.get("front_ends") or {}
    return float(sum(fes.values())) if fes else None


def section(
    samples: Sequence[Sample],
    warm_up_s: float,
    threshold: float = GROWTH_PCT_PER_HOUR,
    min_span_s: float = MIN_SPAN_S,
    until_s: float = math.inf,
) -> dict[str, Any]:
    """``report["memory"]``: the samples and the growth of the driver, the pool (the sum over
    its front ends) and each front end between ``warm_up_s`` and ``until_s`` (the end of the
    load: the wind-down's sign-outs free memory and would hide a slope)."""
    after = [s for s in samples if warm_up_s <= s["t"] <= until_s]
    span = after[-1]["t"] - after[0]["t"] if len(after) > 1 else 0.0
    driver = [(float(s["t"]), float(s["driver"])) for s in after]
    pool = [(float(s["t"]), p) for s in after if (p := pool_rss(s)) is not None]
    ids = sorted({fe for s in samples for fe in s.get("front_ends", {})})
    fes = {
        fe: growth(
            [(float(s["t"]), float(s["front_ends"][fe])) for s in after if fe in s["front_ends"]],
            threshold,
        )
        for fe in ids
    }
    g: dict[str, Any] = {
        "warm_up_s": warm_up_s,
        "until_s": until_s if math.isfinite(until_s) else None,
        "span_s": span,
        "min_span_s": min_span_s,
        "threshold_pct_per_hour": threshold,
        "judged": span >= min_span_s,
        "driver": growth(driver, threshold),
        "pool": growth(pool, threshold),
        "front_ends": fes,
    }
    machine = [int(s["machine"]) for s in samples if "machine" in s]
    if machine:
        g["machine"] = {"max_mib": max(machine) / MIB, "last_mib": machine[-1] / MIB}
    g["ok"] = bool(g["driver"]["ok"] and g["pool"]["ok"] is not False) if g["judged"] else None
    return {"samples": list(samples), "growth": g}


def check(mem: Mapping[str, Any]) -> dict[str, Any] | None:
    """The verdict's line for ``section``'s growth; None when the run was too short to judge."""
    g = mem["growth"]
    if not g["judged"]:
        return None

    def figure(name: str) -> str:
        x = g[name]
        return f"{name} {x['pct_per_hour']:+.1f}%/h" if x.get("samples") else f"{name} -"

    return {
        "check": f"no memory growth after warm-up (from {g['warm_up_s']:.0f} s; driver, pool)",
        "measured": f"{figure('driver')}, {figure('pool')}",
        "target": f"< {g['threshold_pct_per_hour']:g}%/h",
        "status": "ok" if g["ok"] else "fail",
        "ok": bool(g["ok"]),
    }


def add_to(report: dict[str, Any], mem: dict[str, Any]) -> None:
    """Put ``section``'s result in ``report`` and its check in the verdict."""
    report["memory"] = mem
    line = check(mem)
    if line is not None:
        verdict = report["verdict"]
        verdict["checks"].append(line)
        if not line["ok"] and verdict.get("result", "PASS") == "PASS":
            verdict["result"] = "FAIL"
        verdict["pass"] = bool(verdict["pass"] and line["ok"])


def table(samples: Sequence[Sample], every_s: float) -> list[Sample]:
    """The samples nearest each multiple of ``every_s`` (the text report's table)."""
    if not samples:
        return []
    out: list[Sample] = []
    mark = 0.0
    end = samples[-1]["t"]
    while mark <= end + every_s / 2:
        best = min(samples, key=lambda s: abs(s["t"] - mark))
        if not out or best is not out[-1]:
            out.append(best)
        mark += every_s
    if out[-1] is not samples[-1]:
        out.append(samples[-1])
    return out


def natural(name: str) -> tuple[str, int]:
    """Sort key putting fe2 before fe10."""
    stem = name.rstrip("0123456789")
    digits = name[len(stem) :]
    return stem, int(digits) if digits else -1


def text(mem: Mapping[str, Any]) -> list[str]:
    """The memory section as a terminal reads it: a table, then the growth."""
    samples = mem["samples"]
    if not samples:
        return []
    end = samples[-1]["t"]
    every = 600.0 if end >= 1800 else max(10.0, round(end / 6, -1))
    ids = sorted({fe for s in samples for fe in s.get("front_ends", {})}, key=natural)
    head = f"{'t (s)':>8} {'driver MiB':>11} {'pool MiB':>9}" + "".join(
        f" {fe + ' MiB':>11}" for fe in ids
    )
    lines = [f"memory (resident, every {every:g} s):", head]
    for s in table(samples, every):
        p = pool_rss(s)
        fes = s.get("front_ends", {})
        lines.append(
            f"{s['t']:>8.0f} {s['driver'] / MIB:>11.1f} "
            + (f"{p / MIB:>9.1f}" if p is not None else f"{'-':>9}")
            + "".join(f" {fes[fe] / MIB:>11.1f}" if fe in fes else f" {'-':>11}" for fe in ids)
        )
    g = mem["growth"]
    parts = []
    for name in ("driver", "pool"):
        x = g[name]
        if x.get("samples"):
            parts.append(
                f"{name} {x['mib_per_hour']:+.1f} MiB/h ({x['pct_per_hour']:+.1f}%/h, mean "
                f"{x['mean_mib']:.0f} MiB)"
            )
    judged = (
        f"judged against < {g['threshold_pct_per_hour']:g}%/h"
        if g["judged"]
        else f"not judged: {g['span_s']:.0f} s after warm-up, needs {g['min_span_s']:.0f} s"
    )
    lines.append(
        f"growth after warm-up ({g['warm_up_s']:.0f} s): "
        + ("; ".join(parts) or "no samples after it")
    )
    lines.append(f"  {judged}")
    if "machine" in g:
        m = g["machine"]
        lines.append(
            f"the whole pool on this machine (proportional set size of its processes, shared "
            f"pages counted once): max {m['max_mib']:.0f} MiB, last {m['last_mib']:.0f} MiB"
        )
    return lines
