"""What the Enterprise bench reads of a pool's processes: each front end's batch histogram
(from its /metrics) and every process's processor time (from /proc, as its
``process_cpu_seconds_total`` counts it)."""

from __future__ import annotations

import asyncio
import os
import urllib.request
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from bench.hotpath_common import cpu_seconds

if TYPE_CHECKING:
    from enterprise.pool import EnterprisePool

BATCH_METRIC = "poolsim_cross_node_batch_items"


def scrape_metrics(address: str, timeout: float = 5.0) -> dict[str, float]:
    """From one front end's /metrics: the batch histogram's sum and count."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out = {"batch_sum": 0.0, "batch_count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == BATCH_METRIC:
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    out["batch_sum"] += sample.value
                elif sample.name.endswith("_count"):
                    out["batch_count"] += sample.value
    return out


async def pool_totals(metrics_addresses: list[str]) -> dict[str, float]:
    """The figures of ``scrape_metrics`` added up over the given front ends."""
    got = await asyncio.gather(
        *(asyncio.to_thread(scrape_metrics, a) for a in metrics_addresses if a)
    )
    return {k: sum(g[k] for g in got) for k in ("batch_sum", "batch_count")}


def cpu_by_process(pids: dict[str, int]) -> dict[str, float]:
    """Processor seconds used so far by each named process: what its
    ``process_cpu_seconds_total`` says (user plus system time), read from /proc, since
    scraping /metrics inside the window would cost the front ends."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


async def pool_pids(pool: EnterprisePool) -> dict[str, int]:
    """Every process of the pool: each front end's and the fabric actor's."""
    handles = await pool.fabric.handles_of.remote()
    pids = {fe: await handle.pid.remote() for fe, handle in sorted(handles.items())}
    pids["fabric"] = await pool.fabric.__ray_call__.remote(lambda actor: os.getpid())
    return pids
