"""Samples every front end's Prometheus endpoint once a second during a run: processor use
(what Lync's "FE processor below 80%" means), memory, endpoints, queue depth, and its defence
against overload (average holding time, connections in flow control, requests held).

Processor use is the front end process's CPU seconds per wall second, in percent of one core
(a Python front end runs its engine on one core). With several front ends (Enterprise), each
round of samples also gives the pool's total: the sum over the front ends that answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from dataclasses import dataclass, field

from bench.samples import Samples, weighted_mean

#: sample name (as on the exposition's lines) -> figure; each is one unlabelled sample
WANTED = {
    "process_cpu_seconds_total": "cpu_seconds",
    "process_resident_memory_bytes": "rss_bytes",
    "poolsim_endpoints_active": "endpoints",
    "poolsim_event_queue_depth": "queue_depth",
    "poolsim_average_holding_time_seconds": "holding_s",
    "poolsim_flow_controlled_connections": "flow_controlled",
    "poolsim_flow_control_held_requests_total": "held",
}

#: a front end's sample: its fields, by index (each kept sample then ends with its weight)
T, CPU, RSS_MIB, ENDPOINTS, QUEUE_DEPTH, HOLDING_S, FLOW_CONTROLLED, HELD = range(8)
FIELDS = 8


def wanted_figures(text: str) -> dict[str, float]:
    """The figures of WANTED in a Prometheus text exposition (the first sample of each).

    Only the lines of those names are read: a front end's exposition is mostly histogram
    buckets, and parsing all of it once a second (in a thread, holding the interpreter) cost
    the driver processor and event-loop lag."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        key = WANTED.get(name)
        if key is not None and key not in out:
            with contextlib.suppress(ValueError, IndexError):
                out[key] = float(rest.split()[0])
    return out


def scrape(address: str, timeout: float = 2.0) -> dict[str, float]:
    """The figures of WANTED from one front end's /metrics."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as resp:
        return wanted_figures(resp.read().decode())


@dataclass
class FrontEndSeries:
    """One front end's samples: (run second, cpu %, rss MiB, endpoints, queue depth, average
    holding time s, connections in flow control, requests held so far), by the indices above,
    kept at bounded cost (:class:`bench.samples.Samples`: each kept sample ends with its
    weight)."""

    address: str
    samples: Samples = field(default_factory=Samples)
    _last: tuple[float, float] | None = None

    def add(self, t: float, wall: float, figures: dict[str, float]) -> float | None:
        """Take one scrape; the processor use it gives, if it made a sample."""
        cpu = figures.get("cpu_seconds")
        pct = 0.0
        if cpu is not None and self._last is not None and wall > self._last[0]:
            pct = 100.0 * (cpu - self._last[1]) / (wall - self._last[0])
        if cpu is not None:
            self._last = (wall, cpu)
            if len(self.samples) or pct:
                self.samples.append(
                    (
                        t,
                        pct,
                        figures.get("rss_bytes", 0.0) / 2**20,
                        figures.get("endpoints", 0.0),
                        figures.get("queue_depth", 0.0),
                        figures.get("holding_s", 0.0),
                        figures.get("flow_controlled", 0.0),
                        figures.get("held", 0.0),
                    )
                )
                return pct
        return None

    def cpu_mean(self, since: float = 0.0) -> float:
        return weighted_mean([s for s in self.samples if s[0] >= since], CPU, FIELDS)

    def cpu_max(self, since: float = 0.0) -> float:
        return max((s[1] for s in self.samples if s[0] >= since), default=0.0)


class Probe:
    """Scrapes each named front end every ``interval`` seconds until stopped."""

    def __init__(self, metrics_addresses: dict[str, str], t0: float, interval: float = 1.0) -> None:
        self.series = {fe: FrontEndSeries(addr) for fe, addr in metrics_addresses.items() if addr}
        #: per round: (run second, total processor % over the front ends sampled, how many)
        self.pool = Samples()
        self.t0 = t0
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            t = time.perf_counter() - self.t0
            got = await asyncio.gather(*(self._sample(s) for s in self.series.values()))
            pcts = [p for p in got if p is not None]
            if pcts:
                self.pool.append((t, sum(pcts), len(pcts)))
            await asyncio.sleep(self.interval)

    async def _sample(self, series: FrontEndSeries) -> float | None:
        try:
            figures = await asyncio.to_thread(scrape, series.address)
        except OSError:
            return None  # a front end that is down has no figures this second
        wall = time.perf_counter()
        return series.add(wall - self.t0, wall, figures)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
